/**
 * The operator channel's public API (named exports only): the server the host attaches to its
 * HTTP server, the protocol schemas, tickets, and the Node client with its terminal (`contained operator`).
 */
export type { DecideInput, OperatorBackend, RequestEvent, RequestView, TokenVerifier } from './backend.js';
export { attachOperatorChannel, OPERATOR_DEFAULTS, type ConnectedOperator, type OperatorChannel, type OperatorChannelOptions } from './server.js';
export { CLOSE } from './connection.js';
export { createTicketStore, memorySecrets, type SecretRecords, type Ticket, type TicketStore, type TicketStoreOptions } from './tickets.js';
export { OperatorClient, type OperatorClientOptions, type OperatorEvent } from './client.js';
export { formatEvent, formatPending, formatRequest, runOperatorTerminal, type TerminalIo } from './terminal.js';
export {
  CLIENT_MESSAGE_TYPES,
  clientMessageSchema,
  createdMessageSchema,
  decideMessageSchema,
  errorMessageSchema,
  grantEventMessageSchema,
  grantsListMessageSchema,
  grantsRevokeMessageSchema,
  helloMessageSchema,
  parseClientMessage,
  pingMessageSchema,
  PROTOCOL,
  requestViewSchema,
  resolvedMessageSchema,
  resultMessageSchema,
  resultPayloadSchemas,
  runEventMessageSchema,
  runsCancelMessageSchema,
  runsListMessageSchema,
  runViewSchema,
  serverMessageSchema,
  snapshotMessageSchema,
  updatedMessageSchema,
  type ClientMessage,
  type ClientMessageType,
  type ErrorMessage,
  type HelloMessage,
  type WireRequestView,
  type ResultMessage,
  type ResultPayload,
  type ServerMessage,
} from './protocol.js';
