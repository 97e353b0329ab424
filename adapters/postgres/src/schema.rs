//! The database schema: validated schema names, and the versioned, idempotent
//! migrations shipped in this crate.
//!
//! Every table lives in the configured schema, so tenants (or tests) never
//! see each other's data. Migrations are recorded in that schema's
//! `schema_migrations` table and run under a transaction-scoped advisory
//! lock, so any number of processes may migrate the same schema at once.

use std::fmt;

use orchestrix::{Error, Result};
use tokio_postgres::Client;

use crate::error::from_pg;

/// Advisory-lock class of migrations (first key of the two-key form).
const MIGRATE_CLASS: i32 = -0x4f52_0001;
/// Advisory-lock class of position claims.
const CLAIM_CLASS: i32 = -0x4f52_0002;
/// Advisory-lock class of the shared "claimed positions, still running"
/// marker that readers look up in `pg_locks`.
const MARKER_CLASS: i32 = -0x4f52_0003;

/// A validated schema name: `^[a-z_][a-z0-9_]{0,62}$`. Only names of this
/// shape are ever formatted into SQL, always double-quoted.
///
/// ```
/// use orchestrix_postgres::SchemaName;
/// assert_eq!(SchemaName::new("tenant_7")?.quoted(), "\"tenant_7\"");
/// assert!(SchemaName::new("Tenant").is_err());
/// assert!(SchemaName::new("a;drop table x").is_err());
/// assert!(SchemaName::new("").is_err());
/// assert!(SchemaName::new(&"x".repeat(64)).is_err());
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

impl SchemaName {
    /// Validates a name.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the name does not match
    /// `^[a-z_][a-z0-9_]{0,62}$`.
    pub fn new(name: &str) -> Result<Self> {
        let invalid = |reason: &str| {
            Error::invalid(
                format!("postgres schema name `{}`", name.escape_debug()),
                reason,
            )
        };
        let mut chars = name.chars();
        match chars.next() {
            None => return Err(invalid("is empty")),
            Some(c) if c.is_ascii_lowercase() || c == '_' => {}
            Some(_) => return Err(invalid("must start with a lowercase ASCII letter or `_`")),
        }
        if name.len() > 63 {
            return Err(invalid("is longer than 63 bytes"));
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(invalid(
                "may only hold lowercase ASCII letters, digits and `_`",
            ));
        }
        if name.starts_with("pg_") {
            return Err(invalid("`pg_` names are reserved by PostgreSQL"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The bare name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The double-quoted identifier, for SQL text.
    #[must_use]
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// A table (or other object) of this schema, quoted: `"schema"."table"`.
    /// `table` must be a constant of this crate or a validated identifier.
    #[must_use]
    pub fn table(&self, table: &str) -> String {
        format!("\"{}\".\"{table}\"", self.0)
    }

    /// The LISTEN/NOTIFY channel on which appends to this schema are
    /// announced (an identifier of at most 63 bytes).
    #[must_use]
    pub fn channel(&self) -> String {
        let full = format!("orchestrix_{}", self.0);
        if full.len() <= 63 {
            full
        } else {
            format!("orchestrix_{}_{:08x}", &self.0[..40], fnv1a(&self.0))
        }
    }

    /// First key of the stream write locks of this schema, in
    /// `0x4000_0000..=0x7fff_ffff` (disjoint from this crate's lock classes).
    #[must_use]
    pub fn stream_lock_key(&self) -> i32 {
        i32::try_from((fnv1a(&self.0) & 0x3fff_ffff) | 0x4000_0000).unwrap_or(i32::MAX)
    }

    /// First key of the checkpoint locks of this schema, in `0..=0x3fff_ffff`.
    #[must_use]
    pub fn checkpoint_lock_key(&self) -> i32 {
        i32::try_from(fnv1a(&self.0) & 0x3fff_ffff).unwrap_or(0)
    }

    fn claim_lock_key(&self) -> i32 {
        i32::try_from(fnv1a(&self.0) & 0x7fff_ffff).unwrap_or(0)
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 32-bit FNV-1a: stable across processes and versions (unlike `std`'s hasher).
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// One migration: a version, a name, and SQL with `{schema}`,
/// `{stream_lock_key}`, `{claim_class}` and `{claim_key}` placeholders.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing from 1.
    pub version: i32,
    /// What it does.
    pub name: &'static str,
    sql: &'static str,
}

impl Migration {
    /// The SQL for one schema.
    #[must_use]
    pub fn sql(&self, schema: &SchemaName) -> String {
        self.sql
            .replace("{schema}", &schema.quoted())
            .replace("{stream_lock_key}", &schema.stream_lock_key().to_string())
            .replace("{claim_class}", &CLAIM_CLASS.to_string())
            .replace("{claim_key}", &schema.claim_lock_key().to_string())
            .replace("{marker_class}", &MARKER_CLASS.to_string())
            // pg_locks shows the keys of the two-key form as oids (unsigned).
            .replace(
                "{marker_classid}",
                &u32::from_ne_bytes(MARKER_CLASS.to_ne_bytes()).to_string(),
            )
    }
}

/// Every migration, in order. Never edit a released one: add the next.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "event store",
        sql: V1,
    },
    Migration {
        version: 2,
        name: "one-statement append",
        sql: V2,
    },
    Migration {
        version: 3,
        name: "read models of typed projections",
        sql: V3,
    },
];

/// The schema version this crate writes.
#[must_use]
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const V1: &str = r#"
-- Positions are claimed in blocks by claim_positions(); never by a column default.
CREATE SEQUENCE {schema}.positions AS bigint MINVALUE 1 START 1 CACHE 1;

CREATE TABLE {schema}.events (
    position       bigint      PRIMARY KEY,
    -- The writing transaction: readers of the all-stream only return rows
    -- whose transaction is older than every transaction still running.
    xid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id      text        NOT NULL,
    category       text        NOT NULL,
    revision       bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    event_type     text        NOT NULL,
    schema_version bigint      NOT NULL,
    source         text        NOT NULL,
    time           timestamptz NOT NULL,
    -- Nanoseconds below the microsecond that timestamptz keeps.
    time_nanos     smallint    NOT NULL,
    content_type   text        NOT NULL,
    data           bytea       NOT NULL,
    metadata       jsonb       NOT NULL,
    CONSTRAINT events_stream_revision_key UNIQUE (stream_id, revision),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

CREATE TABLE {schema}.snapshots (
    stream_id      text        PRIMARY KEY,
    revision       bigint      NOT NULL,
    state_version  bigint      NOT NULL,
    data           bytea       NOT NULL,
    taken_at       timestamptz NOT NULL,
    taken_at_nanos smallint    NOT NULL
);

CREATE TABLE {schema}.checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.dead_letters (
    id              uuid        PRIMARY KEY,
    consumer        text        NOT NULL,
    event_id        uuid,
    event_type      text,
    stream_id       text,
    position        bigint,
    payload         bytea       NOT NULL,
    headers         jsonb       NOT NULL,
    reason          text        NOT NULL,
    error_kind      text        NOT NULL,
    attempts        bigint      NOT NULL,
    failed_at       timestamptz NOT NULL,
    failed_at_nanos smallint    NOT NULL
);
CREATE INDEX dead_letters_order ON {schema}.dead_letters (failed_at, failed_at_nanos, id);
CREATE INDEX dead_letters_consumer ON {schema}.dead_letters (consumer, failed_at, failed_at_nanos, id);

CREATE TABLE {schema}.timers (
    id           text        PRIMARY KEY,
    owner        text        NOT NULL,
    key          text        NOT NULL,
    due_at       timestamptz NOT NULL,
    due_at_nanos smallint    NOT NULL,
    payload      jsonb       NOT NULL
);
CREATE INDEX timers_due ON {schema}.timers (owner, due_at, due_at_nanos, id COLLATE "C");

-- Locks the streams of a batch (in one global order, so batches never
-- deadlock), then reads their revisions and which of the event ids exist.
-- Each statement of a plpgsql function takes a fresh snapshot, so the reads
-- see every commit of a writer that held a lock we waited for.
CREATE FUNCTION {schema}.append_prepare(p_streams text[], p_ids uuid[], OUT revisions bigint[], OUT existing uuid[])
LANGUAGE plpgsql AS $fn$
DECLARE
    h integer;
BEGIN
    FOR h IN SELECT DISTINCT hashtext(x) FROM unnest(p_streams) AS x ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock({stream_lock_key}, h);
    END LOOP;
    SELECT coalesce(array_agg((SELECT e.revision FROM {schema}.events e
                               WHERE e.stream_id = u.x ORDER BY e.revision DESC LIMIT 1) ORDER BY u.o), '{}')
      INTO revisions
      FROM unnest(p_streams) WITH ORDINALITY AS u(x, o);
    -- One index probe per id (a scalar subquery with LIMIT is never turned
    -- into a join), whatever plan the cached generic plan would pick for
    -- `event_id = ANY (p_ids)` (a sequential scan, as the table grows).
    SELECT coalesce(array_agg(i.id), '{}') INTO existing
      FROM unnest(p_ids) AS i(id)
     WHERE (SELECT true FROM {schema}.events e WHERE e.event_id = i.id LIMIT 1);
END
$fn$;

-- Claims p_count consecutive positions for the calling transaction and
-- returns the first. The transaction id is assigned in the same critical
-- section, so transactions that claim in the order A, B have xid(A) < xid(B)
-- and positions(A) < positions(B): every row of a transaction still running
-- lies above every row of the transactions older than the oldest running
-- one, which is what makes `xid < pg_snapshot_xmin(...)` reads gap-free.
-- The lock is taken inside a subtransaction that is then rolled back, which
-- releases it at once (the xid and the sequence are not transactional).
CREATE FUNCTION {schema}.claim_positions(p_count bigint) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    v_first bigint;
BEGIN
    IF p_count < 1 THEN
        RAISE EXCEPTION 'cannot claim % positions', p_count USING ERRCODE = '22023';
    END IF;
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'events must be appended before anything else is written in the transaction'
            USING ERRCODE = '55000';
    END IF;
    -- Held until the end of the transaction: readers find the transactions
    -- that claimed positions here and still run through pg_locks.
    PERFORM pg_advisory_xact_lock_shared({marker_class}, {claim_key});
    BEGIN
        PERFORM pg_advisory_xact_lock({claim_class}, {claim_key});
        PERFORM pg_current_xact_id();
        v_first := nextval('{schema}.positions');
        IF p_count > 1 THEN
            PERFORM setval('{schema}.positions', v_first + p_count - 1);
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'OX001';
    EXCEPTION WHEN SQLSTATE 'OX001' THEN
        NULL;
    END;
    RETURN v_first;
END
$fn$;

-- The global xmin holds readers back behind every running transaction of
-- the cluster, even those that never touch this schema. The exact bound is
-- the oldest running transaction that claimed positions in this schema.
-- Read under the claim lock: every claimer has either finished its claim
-- (and holds the marker, with its xid) or will get an xid >= next_xid.
CREATE FUNCTION {schema}.oldest_claimer(OUT next_xid bigint, OUT oldest bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
    BEGIN
        PERFORM pg_advisory_xact_lock({claim_class}, {claim_key});
        -- next_xid: the snapshot's xmax, at most the next xid to be
        -- assigned. pg_locks shows 32-bit xids, which lie within 2^31 of it
        -- (on either side: running xids may exceed xmax).
        WITH r AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS x)
        SELECT r.x,
               (SELECT min(r.x + (((t.transactionid::text::bigint - (r.x & 4294967295) + 2147483648) & 4294967295)
                                  - 2147483648))
                  FROM pg_locks m
                  JOIN pg_locks t ON t.pid = m.pid
                 WHERE m.locktype = 'advisory' AND m.classid = '{marker_classid}'::oid
                   AND m.objid = '{claim_key}'::oid AND m.objsubid = 2 AND m.granted
                   AND m.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                   AND t.locktype = 'transactionid' AND t.mode = 'ExclusiveLock' AND t.granted)
          INTO next_xid, oldest
          FROM r;
        RAISE EXCEPTION USING ERRCODE = 'OX001';
    EXCEPTION WHEN SQLSTATE 'OX001' THEN
        NULL;
    END;
END
$fn$;

-- Rows of the all-stream after p_after, each with whether readers may
-- deliver it: its transaction is older than every transaction that claimed
-- positions here and may still commit. Safe rows form a prefix.
CREATE FUNCTION {schema}.read_all_safe(p_after bigint, p_limit bigint, p_categories text[], p_types text[])
RETURNS TABLE ("position" bigint, stream_id text, revision bigint, event_id uuid, event_type text,
               schema_version bigint, source text, "time" timestamptz, time_nanos smallint,
               content_type text, data bytea, metadata jsonb, safe boolean)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM {schema}.oldest_claimer();
    RETURN QUERY
    SELECT e.position, e.stream_id, e.revision, e.event_id, e.event_type, e.schema_version, e.source, e.time,
           e.time_nanos, e.content_type, e.data, e.metadata, e.xid < b.bound
      FROM {schema}.events e,
           (SELECT least(c.oldest::text::xid8,
                         (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x WHERE x >= c.next_xid::text::xid8),
                         pg_snapshot_xmax(pg_current_snapshot())) AS bound) AS b
     WHERE e.position > p_after
       AND (cardinality(p_categories) = 0 OR e.category = ANY (p_categories))
       AND (cardinality(p_types) = 0 OR e.event_type = ANY (p_types))
     ORDER BY e.position
     LIMIT p_limit;
END
$fn$;

-- The highest safe position and the highest committed one.
CREATE FUNCTION {schema}.heads_safe(OUT safe bigint, OUT committed bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM {schema}.oldest_claimer();
    SELECT coalesce((SELECT e.position FROM {schema}.events e
                      WHERE e.xid < least(c.oldest::text::xid8,
                                          (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
                                            WHERE x >= c.next_xid::text::xid8),
                                          pg_snapshot_xmax(pg_current_snapshot()))
                      ORDER BY e.position DESC LIMIT 1), 0),
           coalesce((SELECT max(e.position) FROM {schema}.events e), 0)
      INTO safe, committed;
END
$fn$;
"#;

/// Version 2: the whole append in one statement (so one round trip, in
/// autocommit): `append_events` locks the batch's streams, checks every
/// request's expected revision in order, claims positions through
/// `claim_positions` and inserts the accepted events. Version 1's
/// `append_prepare` stays for binaries of the previous version.
const V2: &str = r#"
-- One append batch in one statement.
--   p_streams, p_categories: the distinct streams of the batch (any order).
--   p_req_stream (1-based index into p_streams), p_req_expected (>= 0: that
--   exact revision; -1 any; -2 no stream; -3 stream exists), p_req_count:
--   one entry per request, in order.
--   p_ev_*: the events of every request, in order; p_ev_req is the 1-based
--   request index of each event, p_ev_k its 0-based index in its request.
-- Returns, per request, the stream's revision just before it (as the
-- earlier requests of the batch leave it; NULL: no stream), the first of its
-- event ids that is already stored (NULL: none) and whether it was accepted
-- (its expectation holds and none of its ids is stored); and the first
-- claimed position (NULL when none was). The positions of accepted requests
-- are consecutive, in request order. (Ids repeated across the requests of
-- one batch are the caller's to sort out.)
--
-- Serialization: a transaction-scoped advisory lock per stream, taken in one
-- global order (so batches never deadlock); the revisions are read after the
-- locks by a statement with a fresh snapshot, so they include every commit
-- of a writer whose lock we waited for. Gap safety: nothing before
-- claim_positions writes (or gets an xid), so the claim assigns the xid
-- under the claim lock as version 1 does.
CREATE FUNCTION {schema}.append_events(
    p_streams text[], p_categories text[],
    p_req_stream int4[], p_req_expected int8[], p_req_count int4[],
    p_ev_req int4[], p_ev_k int4[], p_ev_id uuid[], p_ev_type text[], p_ev_version int8[],
    p_ev_source text[], p_ev_time timestamptz[], p_ev_nanos int2[], p_ev_content_type text[],
    p_ev_data bytea[], p_ev_metadata jsonb[], p_channel text,
    OUT first_position bigint, OUT actual bigint[], OUT accepted boolean[], OUT duplicate uuid[])
LANGUAGE plpgsql AS $fn$
DECLARE
    n integer := coalesce(array_length(p_req_stream, 1), 0);
    cur bigint[];
    r_rev bigint[];
    r_off bigint[];
    h integer;
    i integer;
    s integer;
    c bigint;
    e bigint;
    ok boolean;
    dup uuid;
    total bigint := 0;
BEGIN
    IF coalesce(array_length(p_streams, 1), 0) = 1 THEN
        PERFORM pg_advisory_xact_lock({stream_lock_key}, hashtext(p_streams[1]));
        cur := ARRAY[(SELECT ev.revision FROM {schema}.events ev
                       WHERE ev.stream_id = p_streams[1] ORDER BY ev.revision DESC LIMIT 1)];
    ELSE
        FOR h IN SELECT DISTINCT hashtext(x) FROM unnest(p_streams) AS x ORDER BY 1 LOOP
            PERFORM pg_advisory_xact_lock({stream_lock_key}, h);
        END LOOP;
        SELECT coalesce(array_agg((SELECT ev.revision FROM {schema}.events ev
                                   WHERE ev.stream_id = u.x ORDER BY ev.revision DESC LIMIT 1) ORDER BY u.o), '{}')
          INTO cur
          FROM unnest(p_streams) WITH ORDINALITY AS u(x, o);
    END IF;
    actual := array_fill(NULL::bigint, ARRAY[n]);
    accepted := array_fill(false, ARRAY[n]);
    duplicate := array_fill(NULL::uuid, ARRAY[n]);
    -- One index probe per id (a scalar subquery with LIMIT is never turned
    -- into a join, whatever the cached generic plan would do with
    -- `event_id = ANY (...)`).
    FOR i, dup IN
        SELECT u.rq, (array_agg(u.id ORDER BY u.k))[1]
          FROM unnest(p_ev_req, p_ev_k, p_ev_id) AS u(rq, k, id)
         WHERE (SELECT true FROM {schema}.events ev WHERE ev.event_id = u.id LIMIT 1)
         GROUP BY u.rq
    LOOP
        duplicate[i] := dup;
    END LOOP;
    r_rev := array_fill(NULL::bigint, ARRAY[n]);
    r_off := array_fill(NULL::bigint, ARRAY[n]);
    FOR i IN 1..n LOOP
        s := p_req_stream[i];
        c := cur[s];
        e := p_req_expected[i];
        ok := CASE WHEN e = -1 THEN true
                   WHEN e = -2 THEN c IS NULL
                   WHEN e = -3 THEN c IS NOT NULL
                   WHEN e >= 0 THEN c IS NOT NULL AND c = e
                   ELSE false END
              AND duplicate[i] IS NULL;
        actual[i] := c;
        IF ok THEN
            accepted[i] := true;
            r_rev[i] := coalesce(c + 1, 0);
            r_off[i] := total;
            total := total + p_req_count[i];
            cur[s] := coalesce(c + 1, 0) + p_req_count[i] - 1;
        END IF;
    END LOOP;
    IF total = 0 THEN
        RETURN;
    END IF;
    first_position := {schema}.claim_positions(total);
    INSERT INTO {schema}.events (position, stream_id, category, revision, event_id, event_type, schema_version,
                                 source, time, time_nanos, content_type, data, metadata)
    SELECT first_position + r_off[u.rq] + u.k, p_streams[p_req_stream[u.rq]], p_categories[p_req_stream[u.rq]],
           r_rev[u.rq] + u.k, u.id, u.typ, u.ver, u.src, u.tm, u.ns, u.ct, u.dat, u.meta
      FROM unnest(p_ev_req, p_ev_k, p_ev_id, p_ev_type, p_ev_version, p_ev_source, p_ev_time, p_ev_nanos,
                  p_ev_content_type, p_ev_data, p_ev_metadata)
           AS u(rq, k, id, typ, ver, src, tm, ns, ct, dat, meta)
     WHERE r_off[u.rq] IS NOT NULL;
    IF p_channel <> '' THEN
        PERFORM pg_notify(p_channel, (first_position + total - 1)::text);
    END IF;
END
$fn$;
"#;

/// The rows of typed projections
/// ([`PostgresReadModels`](crate::PostgresReadModels)): one JSON document per
/// (view, key), and the last stream revision each view applied (for
/// idempotence). `row` is NULL only inside the transaction that creates it.
const V3: &str = r#"
CREATE TABLE {schema}.read_models (
    "view" text  NOT NULL,
    "key"  text  NOT NULL,
    "row"  jsonb,
    PRIMARY KEY ("view", "key")
);

CREATE TABLE {schema}.read_model_applied (
    "view"   text   NOT NULL,
    stream   text   NOT NULL,
    revision bigint NOT NULL,
    PRIMARY KEY ("view", stream)
);
"#;

/// Brings `schema` to the latest version; safe to run concurrently from many
/// processes and again on an up-to-date schema. Returns the versions applied.
///
/// # Errors
/// A backend error; nothing is half-applied (one transaction).
pub async fn migrate(client: &mut Client, schema: &SchemaName) -> Result<Vec<i32>> {
    let map = |e| from_pg("migrate", e);
    let tx = client.transaction().await.map_err(map)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&MIGRATE_CLASS, &schema.as_str()],
    )
    .await
    .map_err(map)?;
    let q = schema.quoted();
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {q};
         CREATE TABLE IF NOT EXISTS {q}.schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(map)?;
    let applied: Vec<i32> = tx
        .query(&format!("SELECT version FROM {q}.schema_migrations"), &[])
        .await
        .map_err(map)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(newer) = applied
        .iter()
        .copied()
        .filter(|v| *v > latest_version())
        .max()
    {
        return Err(Error::invalid(
            format!("postgres schema `{schema}`"),
            format!(
                "is at version {newer}, newer than this crate's {}; upgrade orchestrix-postgres",
                latest_version()
            ),
        ));
    }
    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tx.batch_execute(&m.sql(schema)).await.map_err(map)?;
        tx.execute(
            &format!("INSERT INTO {q}.schema_migrations (version, name) VALUES ($1, $2)"),
            &[&m.version, &m.name],
        )
        .await
        .map_err(map)?;
        tracing::info!(schema = %schema, version = m.version, name = m.name, "applied migration");
        done.push(m.version);
    }
    tx.commit().await.map_err(map)?;
    Ok(done)
}

/// Drops a schema and everything in it (tests, tenant removal).
///
/// # Errors
/// A backend error.
pub async fn drop_schema(client: &Client, schema: &SchemaName) -> Result<()> {
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            schema.quoted()
        ))
        .await
        .map_err(|e| from_pg("drop schema", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_identifier_rule() {
        for ok in ["a", "_", "t_0123abcd", "tenant_a", &"x".repeat(63)] {
            assert!(SchemaName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "A",
            "a-b",
            "a b",
            "a\"b",
            "ä",
            "pg_catalog",
            &"x".repeat(64),
        ] {
            assert!(SchemaName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channel_and_lock_keys_are_stable_and_in_range() {
        let s = SchemaName::new("tenant_a").unwrap();
        assert_eq!(s.channel(), "orchestrix_tenant_a");
        let long = SchemaName::new(&"y".repeat(63)).unwrap();
        assert!(long.channel().len() <= 63);
        assert_ne!(
            long.channel(),
            SchemaName::new(&"y".repeat(62)).unwrap().channel()
        );
        assert!((0x4000_0000..=0x7fff_ffff).contains(&s.stream_lock_key()));
        assert!((0..=0x3fff_ffff).contains(&s.checkpoint_lock_key()));
        assert_eq!(fnv1a("a"), 0xe40c_292c);
    }

    #[test]
    fn migrations_are_ordered_and_fully_substituted() {
        let s = SchemaName::new("t").unwrap();
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i32::try_from(i).unwrap() + 1);
            let sql = m.sql(&s);
            assert!(
                !sql.contains("{schema}") && !sql.contains("_key}") && !sql.contains("_class}"),
                "{sql}"
            );
            assert!(!sql.contains("_classid}"), "{sql}");
        }
    }
}
