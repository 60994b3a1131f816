//! Pushes from the agent (its Mamut changes for the shops): stored durably in bursts (the
//! ones already received, one transaction for all), the shops' dispatchers told, each push
//! acknowledged after its commit.

use axum::extract::ws::Message as WsMessage;
use futures_util::{Sink, Stream};
use shared::protocol::{Message, Push, PushAck};

use super::connection::Connection;
use super::error::SessionError;
use super::session::Session;
use crate::store::Notice;

/// Most pushes stored in one transaction.
const PUSH_BATCH: usize = 512;

/// What followed a burst of pushes.
pub(super) enum Next {
    Nothing,
    Message(Box<Message>),
    /// The session ends (after the pushes before it are stored).
    End(SessionError),
}

/// `first` and the pushes right behind it that have arrived already (without waiting), and
/// what came after them. A frame against the protocol ends the session at once; the end of
/// the connection only after the pushes before it are stored.
pub(super) fn more_pushes<S>(
    conn: &mut Connection<S>,
    first: Push,
) -> Result<(Vec<Push>, Next), SessionError>
where
    S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
{
    let mut pushes = vec![first];
    while pushes.len() < PUSH_BATCH {
        match conn.recv_now() {
            None => break,
            Some(Ok(Message::Push(push))) => pushes.push(push),
            Some(Ok(other)) => return Ok((pushes, Next::Message(Box::new(other)))),
            Some(Err(e)) if e.is_end_of_input() => return Ok((pushes, Next::End(e))),
            Some(Err(e)) => return Err(e),
        }
    }
    Ok((pushes, Next::Nothing))
}

impl Session {
    /// A push and the ones right behind it: stored together, then what came after them is
    /// handled. Returns whether the credit window may have room again.
    pub(super) async fn burst_of_pushes<S>(
        &mut self,
        conn: &mut Connection<S>,
        first: Push,
    ) -> Result<bool, SessionError>
    where
        S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
    {
        let (pushes, next) = more_pushes(conn, first)?;
        // The agent closed right behind them: stored, not acknowledged (it sends them again,
        // stored once), and its Close still answered.
        let closing = matches!(next, Next::End(SessionError::ClientClosed(_)));
        self.store_pushes(conn, pushes, !closing).await?;
        match next {
            Next::Message(msg) => self.handle(conn, *msg).await,
            Next::Nothing => Ok(false),
            Next::End(e) => Err(e),
        }
    }

    /// Stores pushes (in one transaction), tells the dispatchers, and acknowledges each.
    pub(super) async fn store_pushes<S>(
        &mut self,
        conn: &mut Connection<S>,
        pushes: Vec<Push>,
        acknowledge: bool,
    ) -> Result<(), SessionError>
    where
        S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
    {
        if pushes
            .iter()
            .any(|p| p.push_id.is_empty() || p.push_id.len() > 128)
        {
            return Err(SessionError::Protocol(
                "push_id must be 1 to 128 characters".into(),
            ));
        }
        let ids: Vec<String> = pushes.iter().map(|p| p.push_id.clone()).collect();
        let shops = self
            .app
            .store
            .insert_pushes(
                self.identity.tenant_id.clone(),
                self.identity.agent_id.clone(),
                pushes.into_iter().map(|p| (p.push_id, p.change)).collect(),
            )
            .await?;
        for shop in shops {
            self.app.announce(Notice::Dispatch { shop }).await;
        }
        if acknowledge {
            for push_id in ids {
                conn.send(Message::PushAck(PushAck { push_id })).await?;
            }
        }
        Ok(())
    }
}
