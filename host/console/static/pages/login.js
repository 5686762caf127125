// Login with an operator token. The token goes to the host once (POST /console/api/login) and is
// not kept: the session is an HttpOnly cookie, and the field is cleared whatever the answer.
import { api } from '../lib/api.js';
import { h, notice } from '../lib/dom.js';

export function mount(root, { message, onLogin }) {
  const input = h('input#token', { type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'ctd_…', 'aria-describedby': 'token-help' });
  const error = h('p.error', { role: 'alert' });
  const button = h('button.primary', { type: 'submit' }, 'Log in');
  const form = h(
    'form.login',
    {
      on: {
        submit: async (event) => {
          event.preventDefault();
          const token = input.value.trim();
          input.value = '';
          error.textContent = '';
          button.disabled = true;
          try {
            const session = await api.post('/console/api/login', { token });
            await onLogin(session);
          } catch (e) {
            error.textContent = e.status === 401 ? 'That token is not valid (unknown, revoked or mistyped).' : e.message;
            input.focus();
          } finally {
            button.disabled = false;
          }
        },
      },
    },
    h('h1', 'Operator console'),
    message ? notice(message) : null,
    h('label', { for: 'token' }, 'Operator token'),
    input,
    h('p#token-help.muted', 'Create one with ', h('code', 'contained token create --name you --role approver'), '. Viewers watch; approvers decide; admins also manage grants.'),
    error,
    button,
  );
  root.append(h('section.page.narrow', form));
  input.focus();
  return {};
}
