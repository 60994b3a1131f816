//! Tenants never see each other's orders, and only valid tokens open a session.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use shared::claims::AgentClaims;
use tests::shop::order_body;
use tests::{AgentOptions, AgentProcess, RelayProcess, SHOP, TENANT, eventually, setup};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn an_agent_receives_only_its_own_tenants_orders() {
    let world = setup().await;
    world.admin.create_tenant("beta").await;
    world
        .admin
        .add_shop(
            "beta",
            "beta-se",
            &world.shop.secret_text(),
            &["confirmed"],
            "order",
        )
        .await;
    let (_, beta_token) = world.admin.create_agent("beta").await;
    let beta = AgentProcess::start(&world.relay, &beta_token, AgentOptions::default()).await;

    for n in 0..5 {
        world
            .shop
            .send(SHOP, &order_body(SHOP, &format!("acme-{n}"), "confirmed"))
            .await;
        world
            .shop
            .send(
                "beta-se",
                &order_body("beta-se", &format!("beta-{n}"), "confirmed"),
            )
            .await;
    }
    eventually("both agents applied their five orders", WAIT, || async {
        world.agent.applied().len() == 5 && beta.applied().len() == 5
    })
    .await;
    assert!(
        world
            .agent
            .applied()
            .iter()
            .all(|r| r.shop_id == SHOP && r.shop_order_id.starts_with("acme-"))
    );
    assert!(
        beta.applied()
            .iter()
            .all(|r| r.shop_id == "beta-se" && r.shop_order_id.starts_with("beta-"))
    );
}

/// Answer of the relay to a WebSocket upgrade request with `token`.
async fn upgrade_status(relay: &RelayProcess, token: &str) -> StatusCode {
    relay
        .pki
        .client()
        .get(format!("{}/agent/v1/connect", relay.base_url()))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .bearer_auth(token)
        .send()
        .await
        .expect("relay answers")
        .status()
}

/// The relay's signing key, read from its store, to forge tokens that differ in one claim.
fn signing_key(relay: &RelayProcess) -> (String, Vec<u8>) {
    let conn = rusqlite::Connection::open(relay.db_path()).expect("open relay store");
    conn.query_row("SELECT kid, secret FROM signing_keys LIMIT 1", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .expect("a signing key")
}

fn token(kid: &str, key: &[u8], claims: &AgentClaims) -> String {
    let header = Header {
        kid: Some(kid.to_owned()),
        ..Header::new(Algorithm::HS256)
    };
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).expect("encodes")
}

#[tokio::test]
async fn forged_expired_misdirected_and_revoked_tokens_are_refused() {
    let world = setup().await;
    let relay = &world.relay;
    let (kid, key) = signing_key(relay);
    let now = chrono::Utc::now().timestamp();
    let valid = AgentClaims {
        iss: "relay".into(),
        aud: shared::claims::AGENT_AUDIENCE.into(),
        sub: world.agent_id.parse().expect("agent id"),
        tenant: TENANT.parse().expect("tenant"),
        jti: "test".into(),
        iat: now,
        exp: now + 3600,
    };
    assert_eq!(
        upgrade_status(relay, &token(&kid, &key, &valid)).await,
        StatusCode::SWITCHING_PROTOCOLS
    );

    let forged = token(&kid, &[7u8; 32], &valid);
    let expired = token(
        &kid,
        &key,
        &AgentClaims {
            iat: now - 7200,
            exp: now - 3600,
            ..valid.clone()
        },
    );
    let audience = token(
        &kid,
        &key,
        &AgentClaims {
            aud: "someone-else".into(),
            ..valid.clone()
        },
    );
    let issuer = token(
        &kid,
        &key,
        &AgentClaims {
            iss: "another-relay".into(),
            ..valid.clone()
        },
    );
    let tenant = token(
        &kid,
        &key,
        &AgentClaims {
            tenant: "beta".parse().expect("tenant"),
            ..valid.clone()
        },
    );
    let unknown_kid = token("k-unknown", &key, &valid);
    for (name, bad) in [
        ("forged", forged),
        ("expired", expired),
        ("wrong audience", audience),
        ("wrong issuer", issuer),
        ("another tenant", tenant),
        ("unknown key id", unknown_kid),
        ("garbage", "not.a.token".to_owned()),
    ] {
        assert_eq!(
            upgrade_status(relay, &bad).await,
            StatusCode::UNAUTHORIZED,
            "{name} token"
        );
    }

    world.admin.revoke_agent(&world.agent_id).await;
    assert_eq!(
        upgrade_status(relay, &token(&kid, &key, &valid)).await,
        StatusCode::UNAUTHORIZED,
        "revoked agent"
    );
}
