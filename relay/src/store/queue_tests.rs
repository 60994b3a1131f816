//! Unit tests of the queue's rules ([`super`]), without a database.

use super::*;

fn queued(id: i64, order: &str) -> StoredEvent {
    StoredEvent {
        id,
        shop_id: "erp-se".into(),
        order_id: order.into(),
        document_type: "order".into(),
        payload: "{}".into(),
        attempts: 0,
    }
}

fn ids((events, unreadable): &(Vec<QueuedEvent>, Vec<Unreadable>)) -> Vec<i64> {
    assert!(unreadable.is_empty(), "{unreadable:?}");
    events.iter().map(|e| e.id).collect()
}

#[test]
fn picking_takes_one_event_per_order_oldest_first() {
    let mut picker = DeliveryPicker::new(HashSet::new(), HashSet::new(), 10);
    assert_eq!(picker.next_page(), Some(0));
    picker.offer(vec![queued(1, "a"), queued(2, "a"), queued(3, "b")]);
    assert_eq!(picker.next_page(), None, "a short page is the last one");
    assert_eq!(ids(&picker.picked()), [1, 3]);
}

#[test]
fn picking_skips_blocked_orders_and_excluded_events_which_still_block() {
    let blocked = HashSet::from([("erp-se".to_owned(), "a".to_owned())]);
    let mut picker = DeliveryPicker::new(HashSet::from([3]), blocked, 10);
    picker.offer(vec![
        queued(1, "a"),
        queued(3, "b"),
        queued(4, "b"),
        queued(5, "c"),
    ]);
    assert_eq!(
        ids(&picker.picked()),
        [5],
        "event 4 waits behind event 3, which is in flight"
    );
}

#[test]
fn picking_stops_at_want_and_pages_on_after_the_last_id_seen() {
    let mut picker = DeliveryPicker::new(HashSet::new(), HashSet::new(), 2);
    let full: Vec<StoredEvent> = (1..=PAGE).map(|id| queued(id, "same")).collect();
    picker.offer(full);
    assert_eq!(
        picker.next_page(),
        Some(PAGE),
        "a full page asks for the next"
    );
    picker.offer(vec![
        queued(PAGE + 1, "x"),
        queued(PAGE + 2, "y"),
        queued(PAGE + 3, "z"),
    ]);
    assert_eq!(picker.next_page(), None);
    assert_eq!(ids(&picker.picked()), [1, PAGE + 1]);

    let nothing = DeliveryPicker::new(HashSet::new(), HashSet::new(), 0);
    assert_eq!(nothing.next_page(), None, "wanting nothing reads nothing");
}

#[test]
fn an_event_that_does_not_read_back_is_dead_lettered_alone() {
    let mut picker = DeliveryPicker::new(HashSet::new(), HashSet::new(), 10);
    let bad_shop = StoredEvent {
        shop_id: "Bad Shop".into(),
        ..queued(1, "a")
    };
    let bad_type = StoredEvent {
        document_type: "invoce".into(),
        ..queued(3, "c")
    };
    picker.offer(vec![bad_shop, queued(2, "b"), bad_type, queued(4, "a")]);
    let (picked, unreadable) = picker.picked();
    assert_eq!(
        picked.iter().map(|e| (e.id, e.attempt)).collect::<Vec<_>>(),
        [(2, 1), (4, 1)]
    );
    let dead: Vec<i64> = unreadable.iter().map(|u| u.id).collect();
    assert_eq!(dead, [1, 3]);
    let change = &unreadable[0].change;
    assert_eq!(
        (change.from, change.to, change.history),
        (EventState::Pending, EventState::Dead, HistoryState::Dead)
    );
    assert!(
        change.detail.starts_with("the stored shop id is invalid: "),
        "{}",
        change.detail
    );
    assert_eq!(change.last_error.as_ref(), Some(&change.detail));
    let detail = &unreadable[1].change.detail;
    assert!(
        detail.starts_with("the stored document type is invalid: "),
        "{detail}"
    );
}

#[test]
fn a_thin_webhook_that_does_not_read_back_is_dead_lettered_alone() {
    let stored = |id: i64, tenant: &str, shop: &str| StoredFetch {
        id,
        tenant_id: tenant.into(),
        shop_id: shop.into(),
        order_id: "o-1".into(),
        payload: "{}".into(),
    };
    let (jobs, unreadable) = fetch_jobs(vec![
        stored(1, "acme", "Bad Shop"),
        stored(2, "acme", "erp-se"),
        stored(3, "", "erp-se"),
    ]);
    assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
    let dead: Vec<(i64, EventState, &str)> = unreadable
        .iter()
        .map(|u| (u.id, u.change.from, u.change.detail.as_str()))
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!((dead[0].0, dead[0].1), (1, EventState::Fetching));
    assert!(dead[0].2.starts_with("the stored shop id is invalid: "));
    assert!(dead[1].2.starts_with("the stored tenant id is invalid: "));
}

#[test]
fn a_shop_id_that_does_not_read_back_is_skipped() {
    let shops = readable_shops(vec!["Bad Shop".into(), "erp-se".into()]);
    assert_eq!(shops, [ShopId::new("erp-se").expect("valid")]);
}

#[test]
fn outcomes_change_a_pending_event_and_say_why() {
    let ack = acked(Some("10000".into()), false);
    assert_eq!(
        (ack.from, ack.to),
        (EventState::Pending, EventState::Delivered)
    );
    assert_eq!(ack.detail, "applied in Mamut as 10000");
    assert_eq!(ack.mamut_ref, Some(Some("10000".into())));
    assert_eq!(
        acked(Some("7".into()), true).detail,
        "already in Mamut as 7"
    );
    assert_eq!(acked(None, true).detail, "applied in Mamut");

    let retry = retried("timeout".into());
    assert_eq!(
        (retry.to, retry.history),
        (EventState::Pending, HistoryState::Retry)
    );
    assert_eq!(retry.last_error.as_deref(), Some("timeout"));
    assert_eq!(retry.mamut_ref, None);

    let dead = dead_lettered("no such article".into());
    assert_eq!(
        (dead.to, dead.history),
        (EventState::Dead, HistoryState::Dead)
    );
    assert_eq!(dead.detail, "no such article");
}

#[test]
fn an_enriched_webhook_is_delivered_ignored_or_held() {
    let deliver = enrichment(&Enriched::Deliver);
    assert_eq!(
        (deliver.from, deliver.to),
        (EventState::Fetching, EventState::Pending)
    );
    assert_eq!(enrichment(&Enriched::Ignore).to, EventState::Ignored);
    let held = enrichment(&Enriched::Hold("held: no lines".into()));
    assert_eq!(
        (held.to, held.history),
        (EventState::Held, HistoryState::Held)
    );
    assert_eq!(held.last_error.as_deref(), Some("held: no lines"));
    assert_eq!(held.detail, "order fetched from the shop; held: no lines");
}

#[test]
fn a_failed_fetch_is_retried_when_it_has_a_time_else_given_up() {
    assert_eq!(
        fetch_failure(Some(Utc::now())),
        (EventState::Fetching, HistoryState::Retry)
    );
    assert_eq!(fetch_failure(None), (EventState::Dead, HistoryState::Dead));
}

#[test]
fn operators_replay_or_edit_only_dead_or_held_events() {
    assert!(operator_may(1, Some(EventState::Dead), "replayed").is_ok());
    assert!(operator_may(1, Some(EventState::Held), "edited").is_ok());
    assert!(matches!(
        operator_may(1, None, "replayed"),
        Err(StoreError::NotFound(_))
    ));
    let Err(StoreError::Conflict(message)) = operator_may(4, Some(EventState::Pending), "edited")
    else {
        panic!("a pending event cannot be edited");
    };
    assert_eq!(
        message,
        "event 4 is pending; only dead or held events can be edited"
    );
}

#[test]
fn a_replay_fetches_a_thin_webhook_again() {
    let dead = |body: &str| replay(1, Some((EventState::Dead, body.to_owned()))).ok();
    assert_eq!(dead(r#"{"order":{"id":"1"}}"#), Some(EventState::Pending));
    assert_eq!(dead(r#"{"order":"1"}"#), Some(EventState::Fetching));
    assert_eq!(dead(r#"{"order_id":"1"}"#), Some(EventState::Fetching));
    assert_eq!(dead("not json"), Some(EventState::Fetching));
    assert!(matches!(replay(1, None), Err(StoreError::NotFound(_))));
    assert!(matches!(
        replay(1, Some((EventState::Delivered, "{}".into()))),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn dead_dispatch_rows_alone_may_be_replayed() {
    let dead = may_replay_dispatch(1, Some((DispatchState::Dead, "row")));
    assert_eq!(dead.ok(), Some("row"));
    assert!(matches!(
        may_replay_dispatch::<()>(1, None),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        may_replay_dispatch(1, Some((DispatchState::Done, ()))),
        Err(StoreError::Conflict(_))
    ));
    assert!(newer_exists(9).to_string().contains("dispatch item 9"));
}

#[test]
fn an_unreadable_stored_change_is_not_sent() {
    assert!(dispatch_item(1, "{", 1, 0).is_err_and(|why| why.starts_with("the stored change")));
}

#[test]
fn woken_shops_are_listed_once_in_order() {
    let shop = |id: &str| ShopId::new(id).expect("valid");
    let mut woken = vec![shop("b")];
    wake(&mut woken, [shop("a"), shop("b"), shop("a"), shop("c")]);
    assert_eq!(woken, [shop("b"), shop("a"), shop("c")]);
}
