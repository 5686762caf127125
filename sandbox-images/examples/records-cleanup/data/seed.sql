-- Sample database for records-cleanup. Dates are relative to the moment the seed is loaded,
-- so the same rows are always stale: 4 rows older than 90 days, 3 recent ones.
CREATE TABLE records (
  id         INTEGER PRIMARY KEY,
  owner      TEXT NOT NULL,
  payload    TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

INSERT INTO records (id, owner, payload, updated_at) VALUES
  (1, 'ana',  'trial account',        datetime('now', '-400 days')),
  (2, 'bo',   'abandoned cart',       datetime('now', '-200 days')),
  (3, 'chen', 'old export job',       datetime('now', '-120 days')),
  (4, 'dara', 'expired invitation',   datetime('now', '-91 days')),
  (5, 'eli',  'active subscription',  datetime('now', '-89 days')),
  (6, 'fay',  'open support ticket',  datetime('now', '-10 days')),
  (7, 'gus',  'new signup',           datetime('now', '-1 days'));
