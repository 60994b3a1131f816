//! B7's measure: PostgreSQL's activity counters of the Mamut stand-in's tables (scans, rows and
//! index entries read, buffers), read before and after a phase of polls.

use std::time::Duration;

use crate::harness::wait::until;

/// Activity counters of one watched table, from PostgreSQL's statistics views.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TableStats {
    /// Sequential and index scans started on the table.
    pub(super) scans: i64,
    /// Rows read from the table: `seq_tup_read + idx_tup_fetch`.
    pub(super) rows: i64,
    /// Index entries read (`idx_tup_read` over the table's indexes).
    pub(super) index_entries: i64,
    /// Scans of an index whose first key column is the rowversion column.
    pub(super) rv_index_scans: i64,
    /// Buffers touched, table and indexes (`pg_statio_user_tables`, read + hit).
    pub(super) buffers: i64,
}

impl TableStats {
    fn since(self, before: Self) -> Self {
        Self {
            scans: self.scans - before.scans,
            rows: self.rows - before.rows,
            index_entries: self.index_entries - before.index_entries,
            rv_index_scans: self.rv_index_scans - before.rv_index_scans,
            buffers: self.buffers - before.buffers,
        }
    }
}

pub(super) type Stats = std::collections::BTreeMap<String, TableStats>;

pub(super) fn stats_since(after: &Stats, before: &Stats) -> Stats {
    after
        .iter()
        .map(|(table, a)| {
            let b = before.get(table).copied().unwrap_or_default();
            (table.clone(), a.since(b))
        })
        .collect()
}

/// The statistics of every table of the stand-in's schema, as PostgreSQL has them now. Each
/// backend sends its counters at the end of a transaction (at most once a second) and when it
/// exits; the snapshot of this session is cleared first so the read is current.
pub(super) async fn table_stats(pg: &tokio_postgres::Client, schema: &str) -> Stats {
    const SQL: &str = "
        SELECT t.relname::text,
               (t.seq_scan + coalesce(t.idx_scan, 0))::int8,
               (t.seq_tup_read + coalesce(t.idx_tup_fetch, 0))::int8,
               coalesce((SELECT sum(i.idx_tup_read) FROM pg_stat_user_indexes i WHERE i.relid = t.relid), 0)::int8,
               coalesce((SELECT sum(i.idx_scan) FROM pg_stat_user_indexes i
                           JOIN pg_index x ON x.indexrelid = i.indexrelid
                           JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
                          WHERE i.relid = t.relid AND a.attname = 'rv'), 0)::int8,
               (coalesce(s.heap_blks_read, 0) + coalesce(s.heap_blks_hit, 0)
                + coalesce(s.idx_blks_read, 0) + coalesce(s.idx_blks_hit, 0))::int8
          FROM pg_stat_user_tables t JOIN pg_statio_user_tables s USING (relid)
         WHERE t.schemaname = $1";
    if let Err(e) = pg.batch_execute("SELECT pg_stat_clear_snapshot()").await {
        panic!("cannot clear the statistics snapshot: {e}");
    }
    let rows = pg
        .query(SQL, &[&schema])
        .await
        .unwrap_or_else(|e| panic!("cannot read pg_stat_user_tables for {schema}: {e}"));
    rows.iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                TableStats {
                    scans: r.get(1),
                    rows: r.get(2),
                    index_entries: r.get(3),
                    rv_index_scans: r.get(4),
                    buffers: r.get(5),
                },
            )
        })
        .collect()
}

/// Waits until PostgreSQL's statistics show at least `scans` scans of each table since
/// `before` (every statement of a poll is at least one scan of its table), then returns the
/// counters since `before`. The stand-in's sessions send theirs when their TDS connections
/// close.
pub(super) async fn stats_after(
    pg: &tokio_postgres::Client,
    schema: &str,
    before: &Stats,
    scans: &std::collections::BTreeMap<String, i64>,
) -> Option<Stats> {
    let complete = until(Duration::from_secs(30), || async {
        let delta = stats_since(&table_stats(pg, schema).await, before);
        scans
            .iter()
            .all(|(t, n)| delta.get(t).is_some_and(|s| s.scans >= *n))
    })
    .await;
    if complete {
        Some(stats_since(&table_stats(pg, schema).await, before))
    } else {
        None
    }
}

/// Rows, index entries and buffers per poll over the watched tables, from counters covering
/// `polls` polls.
pub(super) fn per_poll(delta: &Stats, tables: &[String], polls: f64) -> (f64, f64, f64) {
    let sum = |f: fn(&TableStats) -> i64| {
        tables
            .iter()
            .filter_map(|t| delta.get(t))
            .map(f)
            .sum::<i64>() as f64
            / polls.max(1.0)
    };
    (
        sum(|s| s.rows),
        sum(|s| s.index_entries),
        sum(|s| s.buffers),
    )
}
