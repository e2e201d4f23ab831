//! `cyclone:platform/websocket`: the guest's side of a session. The
//! connection side is in [`crate::websocket`].

use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::HostState;
use super::bindings::cyclone::platform::websocket::{
    CloseFrame, Event, Host, HostSession, Message, SendError,
};
use crate::websocket::{PeerEvent, SendRefused, Session};

impl Host for HostState {}

impl HostSession for HostState {
    fn subscribe(&mut self, session: Resource<Session>) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(&mut self.table, session)
    }

    fn try_next(&mut self, session: Resource<Session>) -> wasmtime::Result<Option<Event>> {
        let session = self.table.get_mut(&session)?;
        let fresh = !session.is_finished();
        let event = session.try_next();
        if fresh && event.is_some() {
            self.cpu.renew();
        }
        Ok(event.map(|event| match event {
            PeerEvent::Text(text) => Event::Message(Message::Text(text.as_str().to_owned())),
            PeerEvent::Binary(bytes) => Event::Message(Message::Binary(bytes.into())),
            PeerEvent::Closed(frame) => Event::Closed(frame.map(|frame| CloseFrame {
                code: frame.code.into(),
                reason: frame.reason.as_str().to_owned(),
            })),
        }))
    }

    async fn send(
        &mut self,
        session: Resource<Session>,
        message: Message,
    ) -> wasmtime::Result<Result<(), SendError>> {
        let message = match message {
            Message::Text(text) => tokio_tungstenite::tungstenite::Message::text(text),
            Message::Binary(bytes) => tokio_tungstenite::tungstenite::Message::binary(bytes),
        };
        let session = self.table.get(&session)?;
        Ok(session
            .send(message)
            .await
            .map_err(|refused| match refused {
                SendRefused::Closed => SendError::Closed,
                SendRefused::TooLarge => SendError::TooLarge,
            }))
    }

    async fn close(
        &mut self,
        session: Resource<Session>,
        code: u16,
        reason: String,
    ) -> wasmtime::Result<()> {
        let session = self.table.get_mut(&session)?;
        session
            .close(code, &reason)
            .await
            .map_err(wasmtime::Error::msg)
    }

    fn drop(&mut self, session: Resource<Session>) -> wasmtime::Result<()> {
        self.table.delete(session)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Pollable for Session {
    async fn ready(&mut self) {
        Session::ready(self).await;
    }
}
