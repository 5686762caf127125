-- Sample database for refund-desk: load with `sqlite3 shop.db < seed.sql` (or better-sqlite3's exec).
CREATE TABLE orders (
  id             TEXT PRIMARY KEY,
  customer_email TEXT NOT NULL,
  status         TEXT NOT NULL CHECK (status IN ('paid', 'shipped', 'delivered', 'cancelled')),
  amount_cents   INTEGER NOT NULL CHECK (amount_cents >= 0),
  refunded_cents INTEGER NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0),
  created_at     TEXT NOT NULL
);

INSERT INTO orders (id, customer_email, status, amount_cents, refunded_cents, created_at) VALUES
  ('A-1001', 'ana@example.com',   'delivered', 4999,  0,    '2024-06-01T09:12:00Z'),
  ('A-1002', 'bo@example.com',    'delivered', 12900, 0,    '2024-06-02T14:30:00Z'),
  ('A-1003', 'chen@example.com',  'shipped',   2500,  2500, '2024-06-03T08:05:00Z'),
  ('A-1004', 'dara@example.com',  'cancelled', 7800,  0,    '2024-06-04T17:45:00Z'),
  ('A-1005', 'eli@example.com',   'paid',      99900, 10000, '2024-06-05T11:00:00Z');
