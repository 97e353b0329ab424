//! `SqliteStore::transaction` with `save_checkpoint_in`: a read model and its
//! checkpoint commit together or not at all.

mod common;

use std::sync::Arc;

use orchestrix::Error;
use orchestrix::store::CheckpointStore;
use orchestrix_sqlite::rusqlite::{self, OptionalExtension as _};
use orchestrix_sqlite::{SqliteStore, load_checkpoint_in, save_checkpoint_in};

on_both_stores!(
    read_model_and_checkpoint_commit_together,
    an_error_rolls_back_read_model_and_checkpoint,
    a_panic_rolls_back_and_the_writer_survives,
    checkpoints_in_transactions_and_the_port_agree,
    reads_are_read_only,
);

fn sql(e: rusqlite::Error) -> Error {
    Error::backend("sqlite", "projection", false, e)
}

async fn create_read_model(store: &SqliteStore) {
    store
        .transaction(|tx| {
            tx.execute_batch("CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, cents INTEGER NOT NULL)")
                .map_err(sql)
        })
        .await
        .unwrap();
}

async fn balance(store: &SqliteStore, account: &'static str) -> Option<i64> {
    store
        .query(move |conn| {
            conn.query_row(
                "SELECT cents FROM balances WHERE account = ?1",
                [account],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
        })
        .await
        .unwrap()
}

async fn read_model_and_checkpoint_commit_together(store: Arc<SqliteStore>) {
    create_read_model(&store).await;
    let out = store
        .transaction(|tx| {
            tx.execute(
                "INSERT INTO balances (account, cents) VALUES ('a-1', 100)",
                [],
            )
            .map_err(sql)?;
            save_checkpoint_in(tx, "balances", 7)?;
            Ok("done")
        })
        .await
        .unwrap();
    assert_eq!(out, "done");
    assert_eq!(balance(&store, "a-1").await, Some(100));
    assert_eq!(store.load_checkpoint("balances").await.unwrap(), Some(7));
}

async fn an_error_rolls_back_read_model_and_checkpoint(store: Arc<SqliteStore>) {
    create_read_model(&store).await;
    let err = store
        .transaction(|tx| {
            tx.execute(
                "INSERT INTO balances (account, cents) VALUES ('a-2', 50)",
                [],
            )
            .map_err(sql)?;
            save_checkpoint_in(tx, "balances", 9)?;
            Err::<(), _>(Error::invalid("event 9", "the handler failed"))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { .. }),
        "the closure's own error comes back: {err:?}"
    );
    assert_eq!(
        balance(&store, "a-2").await,
        None,
        "the read-model row must be rolled back"
    );
    assert_eq!(
        store.load_checkpoint("balances").await.unwrap(),
        None,
        "the checkpoint must be rolled back"
    );
}

async fn a_panic_rolls_back_and_the_writer_survives(store: Arc<SqliteStore>) {
    create_read_model(&store).await;
    let err = store
        .transaction(|tx| -> orchestrix::Result<()> {
            tx.execute(
                "INSERT INTO balances (account, cents) VALUES ('a-3', 1)",
                [],
            )
            .map_err(sql)?;
            save_checkpoint_in(tx, "balances", 3)?;
            panic!("handler bug");
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("handler bug"), "{err}");
    // A raw BEGIN left open by a panicking job is rolled back too.
    let err = store
        .transaction(|tx| -> orchestrix::Result<()> {
            tx.execute_batch(
                "COMMIT; BEGIN; INSERT INTO balances (account, cents) VALUES ('a-4', 1);",
            )
            .map_err(sql)?;
            panic!("left a transaction open");
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert_eq!(balance(&store, "a-3").await, None);
    assert_eq!(balance(&store, "a-4").await, None);
    assert_eq!(store.load_checkpoint("balances").await.unwrap(), None);
    store.save_checkpoint("balances", 4).await.unwrap();
    assert_eq!(store.load_checkpoint("balances").await.unwrap(), Some(4));
}

async fn checkpoints_in_transactions_and_the_port_agree(store: Arc<SqliteStore>) {
    store.save_checkpoint("p", 11).await.unwrap();
    let seen = store
        .transaction(|tx| {
            let before = load_checkpoint_in(tx, "p")?;
            save_checkpoint_in(tx, "p", 12)?;
            let after = load_checkpoint_in(tx, "p")?;
            let missing = load_checkpoint_in(tx, "other")?;
            Ok((before, after, missing))
        })
        .await
        .unwrap();
    assert_eq!(seen, (Some(11), Some(12), None));
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(12));
    let err = store
        .transaction(|tx| save_checkpoint_in(tx, "p", u64::MAX))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(12));
}

async fn reads_are_read_only(store: Arc<SqliteStore>) {
    create_read_model(&store).await;
    let on_reader = store
        .query(|conn| {
            conn.execute("INSERT INTO balances (account, cents) VALUES ('x', 1)", [])
                .map_err(sql)
        })
        .await;
    if store.config().is_in_memory() {
        // One connection serves reads and writes.
        assert!(on_reader.is_ok());
    } else {
        assert!(on_reader.is_err(), "a reader connection must refuse writes");
        assert_eq!(balance(&store, "x").await, None);
    }
}
