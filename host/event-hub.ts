/**
 * One fan-out of events to listeners: the host's operator event stream (request, grant, run and
 * trust changes; host/gate/events.ts) is one of these, made first in startHost so that the grant
 * service, trust, the request manager and the run service can all be handed `emit` without any of
 * them being built before the others. A listener that throws is reported through `onError` and
 * never stops the others or the emitter.
 */
export interface EventHub<E> {
  emit(event: E): void;
  /** Returns the unsubscribe function. */
  subscribe(listener: (event: E) => void): () => void;
}

export function createEventHub<E>(onError?: (error: unknown, event: E) => void): EventHub<E> {
  const listeners = new Set<(event: E) => void>();
  return {
    emit(event) {
      for (const listener of listeners) {
        try {
          listener(event);
        } catch (error) {
          onError?.(error, event);
        }
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
