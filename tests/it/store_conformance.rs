//! One conformance suite ([`kuma_test_support::store_cases`]), run against
//! every store: the memory store, and the Postgres store on a real
//! PostgreSQL started by the test itself (the kubernetes store runs it in
//! `tests/k8s/store.rs`, against the real test cluster).

use crate::common;

use kuma::resources::{ResourceKey, ResourceType};
use kuma::store::{ChangeEvent, ListQuery, ResourceStore};
use kuma_test_support::store_cases::{self as cases, dataplane, mesh, named, next_event};
use std::time::Duration;

macro_rules! suite {
    ($store:ident, $make:path) => {
        mod $store {
            use super::*;
            suite!(@cases $make, [
                every_kind_round_trips,
                create_assigns_a_version_and_get_returns_it,
                names_are_unique_per_mesh_and_kind,
                resources_need_their_mesh,
                stale_updates_are_refused,
                deleting_a_mesh_deletes_what_is_in_it,
                lists_page_in_name_order_and_filter_by_tag,
                insights_round_trip,
                deleting_a_dataplane_deletes_its_insight,
                insights_are_not_announced,
                change_feed_reports_every_write
            ]);
        }
    };
    (@cases $make:path, [$($case:ident),*]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $make(stringify!($case)).await;
                cases::$case(store.as_ref()).await;
            }
        )*
    };
}

async fn memory_store(_test: &str) -> Box<dyn ResourceStore> {
    Box::new(kuma::store::memory::MemoryStore::new())
}

async fn postgres_store(test: &str) -> Box<dyn ResourceStore> {
    let db = common::migrated_database(&format!("conf_{test}"));
    Box::new(
        kuma::store::postgres::PostgresStore::connect(&db.config())
            .await
            .expect("connect"),
    )
}

suite!(memory, memory_store);
suite!(postgres, postgres_store);

/// Two stores on one fresh database, as two control planes have them.
async fn two_instances(
    name: &str,
) -> (
    common::PgDatabase,
    kuma::store::postgres::PostgresStore,
    kuma::store::postgres::PostgresStore,
) {
    let db = common::migrated_database(name);
    let a = kuma::store::postgres::PostgresStore::connect(&db.config())
        .await
        .unwrap();
    let b = kuma::store::postgres::PostgresStore::connect(&db.config())
        .await
        .unwrap();
    (db, a, b)
}

/// Two control planes on one database: each hears the other's writes
/// through its own change feed, within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_hear_each_others_writes() {
    let (_db, a, b) = two_instances("conf_two_instances").await;
    let mut feed_b = b.subscribe();
    let dp_mesh = a.create(mesh("shared")).await.unwrap();
    assert_eq!(
        next_event(&mut feed_b, "a's mesh").await,
        ChangeEvent::Created(dp_mesh.key)
    );
    let mut feed_a = a.subscribe();
    let dp = b
        .create(dataplane("shared", "dp", "web", 1000))
        .await
        .unwrap();
    // a's own mesh creation may still be on its way through its feed.
    let mut heard = next_event(&mut feed_a, "b's dataplane").await;
    if heard == ChangeEvent::Created(ResourceKey::mesh("shared")) {
        heard = next_event(&mut feed_a, "b's dataplane").await;
    }
    assert_eq!(heard, ChangeEvent::Created(dp.key.clone()));
    assert_eq!(a.get(&dp.key).await.unwrap(), dp);
}

/// The total of a list of one dataplane of mesh `shared`.
async fn dataplane_total(s: &dyn ResourceStore) -> usize {
    let query = ListQuery {
        limit: Some(1),
        ..ListQuery::of(ResourceType::Dataplane, Some("shared"))
    };
    s.list(&query).await.unwrap().total
}

/// Whether `s`'s dataplane total becomes `expected` (10 s at most).
async fn total_becomes(s: &dyn ResourceStore, expected: usize) -> bool {
    for _ in 0..500 {
        if dataplane_total(s).await == expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A list's total is kept between lists, yet follows every create and
/// delete: at once for the instance that wrote, once its feed hears of it
/// for another on the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_list_totals_follow_writes_from_either_instance() {
    let (_db, a, b) = two_instances("conf_two_instances_totals").await;
    a.create(mesh("shared")).await.unwrap();
    a.create(dataplane("shared", "dp-1", "web", 1000))
        .await
        .unwrap();
    assert_eq!(dataplane_total(&a).await, 1);
    assert_eq!(dataplane_total(&b).await, 1);
    // Twice in a row: the second is the kept count.
    assert_eq!(dataplane_total(&a).await, 1);
    let dp2 = a
        .create(dataplane("shared", "dp-2", "web", 1001))
        .await
        .unwrap();
    assert_eq!(
        dataplane_total(&a).await,
        2,
        "the writer counts its own create at once"
    );
    assert!(total_becomes(&b, 2).await, "b hears of a's create");
    b.delete(&dp2.key).await.unwrap();
    assert_eq!(
        dataplane_total(&b).await,
        1,
        "the writer counts its own delete at once"
    );
    assert!(total_becomes(&a, 1).await, "a hears of b's delete");
    // An update counts the same.
    let dp1 = a
        .get(&ResourceKey::new(
            ResourceType::Dataplane,
            "shared",
            &named("dp-1"),
        ))
        .await
        .unwrap();
    a.update(dp1).await.unwrap();
    assert_eq!(dataplane_total(&a).await, 1);
}
