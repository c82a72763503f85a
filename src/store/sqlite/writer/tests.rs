use std::time::Duration;

use rusqlite::Connection;

use crate::store::sqlite::{Result, SqliteStore, StoreError, Write};

async fn store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("db.sqlite"))
        .await
        .unwrap();
    s.write(|c| exec(c, "CREATE TABLE t (v INTEGER PRIMARY KEY) STRICT"))
        .await
        .unwrap();
    (s, dir)
}

fn exec(conn: &Connection, sql: &str) -> Result<Write<()>> {
    conn.execute_batch(sql)?;
    Ok(Write::Keep(()))
}

async fn insert(s: &SqliteStore, v: i64) -> Result<()> {
    s.write(move |c| exec(c, &format!("INSERT INTO t VALUES ({v})")))
        .await
}

async fn values(s: &SqliteStore) -> Vec<i64> {
    sqlx::query_scalar("SELECT v FROM t ORDER BY v")
        .fetch_all(&s.pool)
        .await
        .unwrap()
}

/// Occupies the writer for a while, so that what is queued meanwhile forms one batch.
fn hold(s: &SqliteStore, v: i64) -> tokio::task::JoinHandle<Result<()>> {
    let s = s.clone();
    tokio::spawn(async move {
        s.write(move |c| {
            std::thread::sleep(Duration::from_millis(300));
            exec(c, &format!("INSERT INTO t VALUES ({v})"))
        })
        .await
    })
}

/// Spawns `f` and gives it time to queue its operation behind the held writer.
async fn queued<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let task = tokio::spawn(f);
    tokio::time::sleep(Duration::from_millis(20)).await;
    task
}

#[tokio::test]
async fn concurrent_writes_are_committed_together() {
    let (s, _dir) = store().await;
    let before = s.writer.commits();
    let tasks: Vec<_> = (0..200)
        .map(|v| {
            let s = s.clone();
            tokio::spawn(async move { insert(&s, v).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(values(&s).await, (0..200).collect::<Vec<_>>());
    let commits = s.writer.commits() - before;
    assert!(
        commits < 200,
        "{commits} commits for 200 writes: nothing was batched"
    );
}

#[tokio::test]
async fn a_failed_or_discarded_operation_does_not_take_its_batch_with_it() {
    let (s, _dir) = store().await;
    let held = hold(&s, 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let commits = s.writer.commits();
    let good = queued({
        let s = s.clone();
        async move { insert(&s, 2).await }
    })
    .await;
    let duplicate = queued({
        let s = s.clone();
        async move { insert(&s, 1).await }
    })
    .await;
    let discarded = queued({
        let s = s.clone();
        async move {
            s.write(|c| {
                exec(c, "INSERT INTO t VALUES (3)")?;
                Ok(Write::Discard("busy"))
            })
            .await
        }
    })
    .await;
    let last = queued({
        let s = s.clone();
        async move { insert(&s, 4).await }
    })
    .await;
    held.await.unwrap().unwrap();
    good.await.unwrap().unwrap();
    let err = duplicate.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    assert_eq!(discarded.await.unwrap().unwrap(), "busy");
    last.await.unwrap().unwrap();
    assert_eq!(values(&s).await, vec![1, 2, 4]);
    // The four writes queued while the held one ran joined its transaction.
    assert_eq!(s.writer.commits() - commits, 1);
}

#[tokio::test]
async fn a_failed_commit_fails_every_operation_of_its_batch_and_keeps_nothing() {
    let (s, _dir) = store().await;
    let held = hold(&s, 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = queued({
        let s = s.clone();
        async move { insert(&s, 2).await }
    })
    .await;
    // A foreign key checked only at COMMIT: the commit of the whole batch fails.
    let orphan = queued({
        let s = s.clone();
        async move {
            s.write(|c| {
                {
                    exec(c, "PRAGMA defer_foreign_keys = ON")?;
                    exec(
                        c,
                        "INSERT INTO job_steps (job_id, position, name, status) VALUES ('none', 0, 'x', 'pending')",
                    )
                }
            })
            .await
        }
    })
    .await;
    let after = queued({
        let s = s.clone();
        async move { insert(&s, 3).await }
    })
    .await;
    for task in [held, before, orphan, after] {
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
    }
    assert!(values(&s).await.is_empty());
    // The writer goes on.
    insert(&s, 5).await.unwrap();
    assert_eq!(values(&s).await, vec![5]);
}

#[tokio::test]
async fn close_commits_what_is_queued_then_refuses_writes() {
    let (s, _dir) = store().await;
    let held = hold(&s, 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let queued_write = queued({
        let s = s.clone();
        async move { insert(&s, 2).await }
    })
    .await;
    s.writer.close().await;
    held.await.unwrap().unwrap();
    queued_write.await.unwrap().unwrap();
    assert!(matches!(insert(&s, 3).await, Err(StoreError::Closed)));
}

#[tokio::test]
async fn a_panicking_operation_fails_alone_and_the_writer_goes_on() {
    let (s, _dir) = store().await;
    let held = hold(&s, 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let panicking = queued({
        let s = s.clone();
        async move {
            s.write(|c| -> Result<Write<()>> {
                exec(c, "INSERT INTO t VALUES (2)")?;
                panic!("a bug in an operation")
            })
            .await
        }
    })
    .await;
    let after = queued({
        let s = s.clone();
        async move { insert(&s, 3).await }
    })
    .await;
    held.await.unwrap().unwrap();
    assert!(matches!(panicking.await.unwrap(), Err(StoreError::Closed)));
    after.await.unwrap().unwrap();
    insert(&s, 4).await.unwrap();
    assert_eq!(values(&s).await, vec![1, 3, 4]);
}

#[tokio::test]
async fn truncating_the_wal_waits_for_no_reader_and_is_tried_again_later() {
    use crate::store::WalTruncation;
    let (s, dir) = store().await;
    let wal = dir.path().join("db.sqlite-wal");
    insert(&s, 1).await.unwrap();
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);

    // A reader inside a read transaction that started before the last write pins the WAL.
    let reader = Connection::open(dir.path().join("db.sqlite")).unwrap();
    reader
        .execute_batch("BEGIN; SELECT COUNT(*) FROM t;")
        .unwrap();
    insert(&s, 2).await.unwrap();
    assert_eq!(s.truncate_wal().await.unwrap(), WalTruncation::Busy);
    // Writes go on meanwhile.
    insert(&s, 3).await.unwrap();

    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(s.truncate_wal().await.unwrap(), WalTruncation::Truncated);
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    assert_eq!(s.truncate_wal().await.unwrap(), WalTruncation::AlreadyEmpty);
    assert_eq!(values(&s).await, [1, 2, 3]);
}
