//! A typed client for the relay's admin API; every call checks its status code.

use reqwest::StatusCode;
use serde_json::{Value, json};

pub struct Admin {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    pub fn new(client: reqwest::Client, base: String, token: String) -> Self {
        Self {
            client,
            base,
            token,
        }
    }

    /// A raw call: (status, JSON body or Null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}/admin/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin request");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        want: StatusCode,
    ) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert_eq!(status, want, "admin {path}: {value}");
        value
    }

    pub async fn create_tenant(&self, id: &str) {
        let body = json!({ "id": id, "name": format!("{id} AB") });
        self.expect(
            reqwest::Method::POST,
            "/tenants",
            Some(body),
            StatusCode::CREATED,
        )
        .await;
    }

    pub async fn add_shop(
        &self,
        tenant: &str,
        shop_id: &str,
        secret: &str,
        triggers: &[&str],
        document_type: &str,
    ) {
        let body = json!({
            "shop_id": shop_id,
            "webhook_secrets": [secret],
            "trigger_statuses": triggers,
            "document_type": document_type,
        });
        let view = self
            .expect(
                reqwest::Method::POST,
                &format!("/tenants/{tenant}/shops"),
                Some(body),
                StatusCode::CREATED,
            )
            .await;
        assert!(
            !view.to_string().contains(secret),
            "the admin API must not return the secret"
        );
    }

    /// Creates an agent; returns (agent id, token).
    pub async fn create_agent(&self, tenant: &str) -> (String, String) {
        let body = json!({ "name": "mamut-1", "ttl_days": 30 });
        let v = self
            .expect(
                reqwest::Method::POST,
                &format!("/tenants/{tenant}/agents"),
                Some(body),
                StatusCode::CREATED,
            )
            .await;
        let id = v["agent_id"].as_str().expect("agent_id").to_owned();
        let token = v["token"].as_str().expect("token").to_owned();
        (id, token)
    }

    pub async fn revoke_agent(&self, agent_id: &str) {
        self.expect(
            reqwest::Method::POST,
            &format!("/agents/{agent_id}/revoke"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    }

    /// The tenant's events, newest first; `state` filters.
    pub async fn events(&self, tenant: &str, state: Option<&str>) -> Vec<Value> {
        let query = state.map(|s| format!("&state={s}")).unwrap_or_default();
        let v = self
            .expect(
                reqwest::Method::GET,
                &format!("/tenants/{tenant}/events?limit=10000{query}"),
                None,
                StatusCode::OK,
            )
            .await;
        v["events"].as_array().cloned().unwrap_or_default()
    }

    pub async fn event(&self, tenant: &str, id: i64) -> Value {
        self.expect(
            reqwest::Method::GET,
            &format!("/tenants/{tenant}/events/{id}"),
            None,
            StatusCode::OK,
        )
        .await
    }

    /// The tenant's stored pushes, newest first.
    pub async fn pushes(&self, tenant: &str) -> Vec<Value> {
        let v = self
            .expect(
                reqwest::Method::GET,
                &format!("/tenants/{tenant}/pushes?limit=10000"),
                None,
                StatusCode::OK,
            )
            .await;
        v["pushes"].as_array().cloned().unwrap_or_default()
    }

    /// Adds a shop with the full body of `POST /tenants/{tenant}/shops`.
    pub async fn add_shop_with(&self, tenant: &str, body: Value) -> Value {
        self.expect(
            reqwest::Method::POST,
            &format!("/tenants/{tenant}/shops"),
            Some(body),
            StatusCode::CREATED,
        )
        .await
    }

    /// Changes a shop's rules (`PATCH`).
    pub async fn update_shop(&self, tenant: &str, shop: &str, body: Value) -> Value {
        self.expect(
            reqwest::Method::PATCH,
            &format!("/tenants/{tenant}/shops/{shop}"),
            Some(body),
            StatusCode::OK,
        )
        .await
    }

    /// The tenant's dispatch items, newest first; `state` filters.
    pub async fn dispatch(&self, tenant: &str, state: Option<&str>) -> Vec<Value> {
        let query = state.map(|s| format!("&state={s}")).unwrap_or_default();
        let v = self
            .expect(
                reqwest::Method::GET,
                &format!("/tenants/{tenant}/dispatch?limit=10000{query}"),
                None,
                StatusCode::OK,
            )
            .await;
        v["dispatch"].as_array().cloned().unwrap_or_default()
    }

    pub async fn replay_dispatch(&self, tenant: &str, id: i64) {
        self.expect(
            reqwest::Method::POST,
            &format!("/tenants/{tenant}/dispatch/{id}/replay"),
            None,
            StatusCode::OK,
        )
        .await;
    }

    /// Puts a dead event back in the queue (`POST /tenants/{tenant}/events/{id}/replay`).
    pub async fn replay_event(&self, tenant: &str, id: i64) {
        self.expect(
            reqwest::Method::POST,
            &format!("/tenants/{tenant}/events/{id}/replay"),
            None,
            StatusCode::OK,
        )
        .await;
    }
}
