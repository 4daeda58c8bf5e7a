//! Emitting to rooms and sockets from outside a socket handler (the HTTP API, background
//! tasks), on every instance. The Socket.IO handle is generic over its adapter; this trait
//! erases that so the rest of tandem can hold it.

use std::{str::FromStr, sync::Arc, time::Duration};

use futures_util::StreamExt;
use serde_json::Value;
use socketioxide::{SocketIo, adapter::Adapter, socket::Sid};

/// Why a server-to-client call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the session is not connected")]
    Gone,
    #[error("no answer in time")]
    Timeout,
    #[error("the call failed: {0}")]
    Failed(String),
}

#[async_trait::async_trait]
pub trait Rooms: Send + Sync + 'static {
    /// Emits `event` to everyone in `room`, on every instance.
    async fn emit(&self, room: &str, event: &str, payload: &Value) -> Result<(), String>;
    /// Sends `event` to one socket, wherever it is connected, and waits for its ack.
    async fn call(&self, sid: &str, event: &str, payload: &Value, timeout: Duration) -> Result<Value, CallError>;
    /// Makes every socket in `room`, on every instance, join `target` too.
    async fn add_to(&self, room: &str, target: &str) -> Result<(), String>;
}

pub type DynRooms = Arc<dyn Rooms>;

pub struct IoRooms<A: Adapter>(pub SocketIo<A>);

#[async_trait::async_trait]
impl<A: Adapter> Rooms for IoRooms<A> {
    async fn emit(&self, room: &str, event: &str, payload: &Value) -> Result<(), String> {
        self.0.to(room.to_string()).emit(event, payload).await.map_err(|e| e.to_string())
    }

    async fn call(&self, sid: &str, event: &str, payload: &Value, timeout: Duration) -> Result<Value, CallError> {
        let sid = Sid::from_str(sid).map_err(|_| CallError::Gone)?;
        let answers = self
            .0
            .to(sid)
            .timeout(timeout)
            .emit_with_ack::<_, Value>(event, payload)
            .await
            .map_err(|e| CallError::Failed(e.to_string()))?;
        let mut answers = std::pin::pin!(answers);
        match answers.next().await {
            None => Err(CallError::Gone),
            Some((_, Ok(answer))) => Ok(answer),
            Some((_, Err(socketioxide::AckError::Timeout))) => Err(CallError::Timeout),
            Some((_, Err(e))) => Err(CallError::Failed(e.to_string())),
        }
    }

    async fn add_to(&self, room: &str, target: &str) -> Result<(), String> {
        self.0.to(room.to_string()).join(target.to_string()).await.map_err(|e| e.to_string())
    }
}
