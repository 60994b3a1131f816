//! The store's console accounts, sessions and audit log, the same tests on SQLite and on
//! PostgreSQL (see `store.rs` for how a PostgreSQL database is had, or skipped).

use chrono::{Duration, SubsecRound, Utc};
use relay::accounts::{Language, Role};
use relay::store::{AnyStore, NewAudit, SessionRecord, StoreError, StoreLocation, UserRecord};
use shared::TenantId;

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("valid tenant")
}

fn user(name: &str, role: Role, tenant_id: Option<&str>) -> UserRecord {
    let now = Utc::now().trunc_subsecs(6);
    UserRecord {
        username: name.into(),
        role,
        tenant_id: tenant_id.map(tenant),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash-of-{name}"),
        language: Language::En,
        created_at: now,
        password_changed_at: now,
    }
}

fn session(id: &str, username: &str) -> SessionRecord {
    let now = Utc::now().trunc_subsecs(6);
    SessionRecord {
        id_hash: id.into(),
        username: username.into(),
        csrf_token: format!("csrf-{id}"),
        address: Some("192.0.2.1".into()),
        created_at: now,
        last_seen_at: now,
        expires_at: now + Duration::hours(12),
    }
}

async fn accounts_are_created_listed_and_removed(store: &AnyStore) {
    store
        .create_tenant(tenant("acme"), "Acme".into())
        .await
        .expect("tenant");
    store
        .create_tenant(tenant("other"), "Other".into())
        .await
        .expect("tenant");
    let anna = user("anna", Role::Operator, None);
    store.create_user(anna.clone()).await.expect("operator");
    store
        .create_user(user("bo", Role::TenantAdmin, Some("acme")))
        .await
        .expect("tenant admin");
    store
        .create_user(user("cia", Role::TenantViewer, Some("other")))
        .await
        .expect("tenant viewer");
    assert_eq!(store.user("anna".into()).await.expect("read"), Some(anna));
    assert_eq!(store.user("nobody".into()).await.expect("read"), None);

    assert!(matches!(
        store.create_user(user("anna", Role::Operator, None)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .create_user(user("dan", Role::TenantAdmin, Some("missing")))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .create_user(user("eva", Role::TenantViewer, None))
            .await,
        Err(StoreError::Conflict(_)),
    ));
    assert!(matches!(
        store
            .create_user(user("fia", Role::Operator, Some("acme")))
            .await,
        Err(StoreError::Conflict(_)),
    ));

    let names = |users: Vec<UserRecord>| users.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(
        names(store.users(None).await.expect("all")),
        ["anna", "bo", "cia"]
    );
    assert_eq!(
        names(store.users(Some(tenant("acme"))).await.expect("acme")),
        ["bo"]
    );

    store
        .set_language("bo".into(), Language::Sv)
        .await
        .expect("language");
    let bo = store.user("bo".into()).await.expect("read").expect("bo");
    assert_eq!(bo.language, Language::Sv);
    assert_eq!(bo.tenant_id, Some(tenant("acme")));
    assert!(matches!(
        store.set_language("nobody".into(), Language::Sv).await,
        Err(StoreError::NotFound(_))
    ));

    store
        .create_session(session("s-bo", "bo"))
        .await
        .expect("session");
    store.remove_user("bo".into()).await.expect("removed");
    assert_eq!(store.user("bo".into()).await.expect("read"), None);
    assert_eq!(
        store.session("s-bo".into()).await.expect("read"),
        None,
        "its sessions go"
    );
    assert!(matches!(
        store.remove_user("bo".into()).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn sessions_end_with_a_new_password_and_on_request(store: &AnyStore) {
    store
        .create_user(user("anna", Role::Operator, None))
        .await
        .expect("operator");
    let first = session("s-1", "anna");
    store.create_session(first.clone()).await.expect("session");
    store
        .create_session(session("s-2", "anna"))
        .await
        .expect("session");
    assert!(matches!(
        store.create_session(session("s-3", "nobody")).await,
        Err(StoreError::NotFound(_))
    ));

    let (read, owner) = store
        .session("s-1".into())
        .await
        .expect("read")
        .expect("the session");
    assert_eq!(read, first);
    assert_eq!(owner.username, "anna");

    let later = (Utc::now() + Duration::minutes(5)).trunc_subsecs(6);
    store
        .touch_session("s-1".into(), later, first.expires_at)
        .await
        .expect("touch");
    let (touched, _) = store
        .session("s-1".into())
        .await
        .expect("read")
        .expect("s-1");
    assert_eq!(touched.last_seen_at, later);
    store
        .touch_session("gone".into(), later, later)
        .await
        .expect("touching a gone session is nothing");

    store.delete_session("s-1".into()).await.expect("delete");
    assert_eq!(store.session("s-1".into()).await.expect("read"), None);
    store
        .delete_session("s-1".into())
        .await
        .expect("again: nothing");

    store
        .set_password("anna".into(), "$argon2id$new".into())
        .await
        .expect("new password");
    assert_eq!(
        store.session("s-2".into()).await.expect("read"),
        None,
        "ended"
    );
    let anna = store
        .user("anna".into())
        .await
        .expect("read")
        .expect("anna");
    assert_eq!(anna.password_hash, "$argon2id$new");
    assert!(matches!(
        store.set_password("nobody".into(), "x".into()).await,
        Err(StoreError::NotFound(_))
    ));

    store
        .create_session(session("s-4", "anna"))
        .await
        .expect("session");
    store
        .create_session(session("s-5", "anna"))
        .await
        .expect("session");
    assert_eq!(
        store.delete_sessions("anna".into()).await.expect("delete"),
        2
    );
    assert_eq!(
        store.delete_sessions("anna".into()).await.expect("delete"),
        0
    );

    // A session past its lifetime is forgotten when the next one is made.
    let mut old = session("s-old", "anna");
    old.expires_at = Utc::now() - Duration::minutes(1);
    store.create_session(old).await.expect("session");
    store
        .create_session(session("s-6", "anna"))
        .await
        .expect("session");
    assert_eq!(store.session("s-old".into()).await.expect("read"), None);
}

async fn the_audit_log_reads_newest_first_per_tenant(store: &AnyStore) {
    let entry = |tenant_id: Option<&str>, action: &str| NewAudit {
        actor: "anna".into(),
        tenant_id: tenant_id.map(tenant),
        action: action.into(),
        target: format!("/tenants/{}/x", tenant_id.unwrap_or("-")),
        detail: None,
    };
    store
        .append_audit(entry(Some("acme"), "first"))
        .await
        .expect("append");
    store
        .append_audit(entry(None, "second"))
        .await
        .expect("append");
    store
        .append_audit(entry(Some("other"), "third"))
        .await
        .expect("append");
    let mut last = entry(Some("acme"), "fourth");
    last.detail = Some("from 192.0.2.1".into());
    store.append_audit(last).await.expect("append");

    let actions = |entries: Vec<relay::store::AuditEntry>| {
        entries.into_iter().map(|e| e.action).collect::<Vec<_>>()
    };
    assert_eq!(
        actions(store.audit(None, 10).await.expect("all")),
        ["fourth", "third", "second", "first"]
    );
    assert_eq!(
        actions(store.audit(None, 2).await.expect("two")),
        ["fourth", "third"]
    );
    let acme = store.audit(Some(tenant("acme")), 10).await.expect("acme");
    assert_eq!(actions(acme.clone()), ["fourth", "first"]);
    assert_eq!(acme[0].detail.as_deref(), Some("from 192.0.2.1"));
    assert_eq!(acme[0].tenant_id, Some(tenant("acme")));
    assert_eq!(acme[0].actor, "anna");
    assert!(acme[0].id > acme[1].id && acme[0].at >= acme[1].at);
}

conformance!(
    accounts_are_created_listed_and_removed,
    sessions_end_with_a_new_password_and_on_request,
    the_audit_log_reads_newest_first_per_tenant,
);
