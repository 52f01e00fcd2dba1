-- Generates the benchmark database: realistic rows that compress like real data.
-- psql -v scale=1 -f generate.sql  (scale 1: 100k customers, 600k orders, 1.15M events ≈ 0.8 GB on disk)
--
-- Text is drawn from a vocabulary of pseudo-words with a Zipf-like frequency, assembled into a pool
-- of 262,144 sentences (≈ 25 MB, larger than any compressor's window at the levels benchmarked);
-- each row joins two pool sentences chosen by hash, so no two rows' notes repeat. Keys are md5 hex,
-- amounts and timestamps random, documents jsonb with nested objects and arrays. No blank padding.
\set ON_ERROR_STOP on
SELECT setseed(0.4242);
SET synchronous_commit = off;

CREATE TEMP TABLE vocab AS
SELECT i AS id,
       translate(substr(md5('w' || i), 1, 2 + (i % 9)), '0123456789abcdef', 'etaoinshrdlucmpy') AS word
FROM generate_series(0, 7999) i;
CREATE INDEX ON vocab (id);
ANALYZE vocab;

CREATE TEMP TABLE pool AS
WITH picks AS (
    SELECT s, k, floor(8000 * power(random(), 2.5))::int AS wid
    FROM generate_series(0, 262143) s, LATERAL generate_series(1, 4 + (s * 7919) % 24) k
)
SELECT p.s AS id, string_agg(v.word, ' ' ORDER BY p.k) AS txt
FROM picks p JOIN vocab v ON v.id = p.wid
GROUP BY p.s;
CREATE INDEX ON pool (id);
ANALYZE pool;

CREATE TABLE customers (
    id          integer PRIMARY KEY,
    customer_key text NOT NULL,
    name        text NOT NULL,
    email       text NOT NULL,
    country     char(2) NOT NULL,
    created_at  timestamptz NOT NULL,
    balance     numeric(14, 2) NOT NULL,
    attrs       jsonb NOT NULL,
    bio         text
);

CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    order_key   text NOT NULL,
    customer_id integer NOT NULL,
    status      text NOT NULL,
    currency    char(3) NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    quantity    integer NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz,
    doc         jsonb NOT NULL,
    note        text
);

CREATE TABLE events (
    id          bigint PRIMARY KEY,
    order_id    bigint NOT NULL,
    kind        text NOT NULL,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    latency_ms  double precision NOT NULL,
    payload     jsonb NOT NULL,
    message     text NOT NULL
);

INSERT INTO customers
SELECT g,
       'cus_' || substr(md5('c' || g), 1, 20),
       initcap(w1.word) || ' ' || initcap(w2.word),
       w1.word || '.' || w2.word || (g % 1000) || '@' || (ARRAY['example.com','mail.test','corp.example','shop.test'])[1 + g % 4],
       (ARRAY['DE','FR','GB','US','NL','SE','PL','IT','ES','JP','BR','IN'])[1 + (hashint4(g) & 2047) % 12],
       timestamptz '2019-01-01' + (random() * interval '2000 days'),
       round((random() ^ 3 * 50000)::numeric, 2),
       jsonb_build_object(
           'tier', (ARRAY['free','basic','pro','enterprise'])[1 + (floor(4 * random() ^ 2))::int],
           'newsletter', random() < 0.4,
           'tags', jsonb_build_array(w1.word, w3.word),
           'address', jsonb_build_object('street', initcap(w3.word) || ' ' || (1 + g % 300), 'zip', lpad(((hashint4(g) & 65535) * 3)::text, 6, '0'))),
       CASE WHEN random() < 0.8 THEN p.txt END
FROM generate_series(1, (100000 * :scale)::int) g
JOIN vocab w1 ON w1.id = (hashint4(g) & 8191) % 8000
JOIN vocab w2 ON w2.id = (hashint4(g + 7) & 8191) % 8000
JOIN vocab w3 ON w3.id = (hashint4(g + 13) & 8191) % 8000
JOIN pool p ON p.id = hashint4(g + 99) & 262143;

INSERT INTO orders
SELECT g,
       'ord_' || substr(md5('o' || g), 1, 16),
       1 + (hashint4(g) & 1073741823) % (100000 * :scale)::int,
       (ARRAY['pending','paid','paid','shipped','shipped','delivered','delivered','delivered','cancelled','refunded'])[1 + (hashint4(g + 1) & 1023) % 10],
       (ARRAY['EUR','EUR','USD','USD','GBP','SEK','PLN','JPY'])[1 + (hashint4(g + 2) & 1023) % 8],
       round((random() ^ 2 * 2000)::numeric, 2),
       1 + floor(random() ^ 3 * 20)::int,
       timestamptz '2022-01-01' + g * interval '13 seconds' + random() * interval '1 hour',
       CASE WHEN random() < 0.7 THEN timestamptz '2022-01-01' + g * interval '13 seconds' + random() * interval '30 days' END,
       jsonb_build_object(
           'sku', 'SKU-' || lpad(((hashint4(g + 3) & 1048575) % 50000)::text, 6, '0'),
           'items', 1 + (hashint4(g + 4) & 7),
           'gift', random() < 0.1,
           'tags', jsonb_build_array(w1.word, w2.word, w3.word),
           'shipping', jsonb_build_object('method', (ARRAY['standard','express','pickup'])[1 + (hashint4(g + 5) & 255) % 3],
                                          'city', initcap(w2.word), 'zip', lpad(((hashint4(g + 6) & 65535) * 7)::text, 6, '0')),
           'discount', CASE WHEN random() < 0.2 THEN round((random() * 30)::numeric, 1) END,
           'client_ref', md5('r' || g)),
       CASE WHEN random() < 0.75 THEN p1.txt || CASE WHEN random() < 0.5 THEN '. ' || p2.txt ELSE '' END END
FROM generate_series(1, (600000 * :scale)::int) g
JOIN vocab w1 ON w1.id = (hashint4(g + 10) & 8191) % 8000
JOIN vocab w2 ON w2.id = (hashint4(g + 11) & 8191) % 8000
JOIN vocab w3 ON w3.id = floor(8000 * ((hashint4(g + 15) & 65535) / 65536.0) ^ 3)::int
JOIN pool p1 ON p1.id = hashint4(g + 12) & 262143
JOIN pool p2 ON p2.id = hashint4(g + 14) & 262143;

INSERT INTO events
SELECT g,
       1 + (hashint4(g) & 1073741823) % (600000 * :scale)::int,
       (ARRAY['created','payment_authorized','payment_captured','picked','packed','shipped','delivered','email_sent','refund_requested','note_added'])[1 + (hashint4(g + 1) & 1023) % 10],
       timestamptz '2022-01-01' + g * interval '5 seconds' + random() * interval '10 minutes',
       (ARRAY['system','api','worker','admin'])[1 + (hashint4(g + 2) & 255) % 4] || ':' || substr(md5('a' || (g % 5000)), 1, 8),
       round((random() ^ 4 * 5000)::numeric, 3)::double precision,
       jsonb_build_object(
           'ip', '10.' || ((hashint4(g + 3) & 255)) || '.' || ((hashint4(g + 4) & 255)) || '.' || ((hashint4(g + 5) & 255)),
           'ua', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)','Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4)','okhttp/4.12.0','python-requests/2.31','curl/8.5.0'])[1 + (hashint4(g + 6) & 255) % 5],
           'trace_id', md5('t' || g),
           'attempt', 1 + floor(random() ^ 6 * 5)::int,
           'ok', random() < 0.97),
       p.txt
FROM generate_series(1, (1150000 * :scale)::int) g
JOIN pool p ON p.id = hashint4(g + 21) & 262143;

VACUUM (FREEZE, ANALYZE) customers;
VACUUM (FREEZE, ANALYZE) orders;
VACUUM (FREEZE, ANALYZE) events;

CREATE TABLE bench_meta (generator text, scale numeric, created_at timestamptz DEFAULT now());
INSERT INTO bench_meta (generator, scale) VALUES ('bench/dump/generate.sql v1', :scale);
