//! `cyclone:platform/hibernation`: the session a hibernating websocket
//! event runs for, as its guest sees it. The host lends one
//! [`EventSession`] per event and takes it back when the call returns; what
//! the event changed (attachment, topics, closing) is then applied to the
//! session the host keeps (`websocket::hibernate`), or dropped if the event
//! failed.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use wasmtime::component::Resource;

use super::HostState;
use super::bindings::cyclone::platform::hibernation::{FrameKind, Host, HostSession, TopicError};
use super::bindings::cyclone::platform::pubsub::Message as Published;
use super::bindings::cyclone::platform::websocket as wit;
use super::websocket::{Outgoing, close_frame_checked};
use crate::pubsub;

/// The largest attachment, in bytes.
pub const MAX_ATTACHMENT: usize = 16 << 10;
/// The most topics one session may have, subscribed and forwarded together.
pub const MAX_TOPICS: usize = 16;

/// A change to a session's topics, in the order the guest made them.
pub enum TopicChange {
    /// Receive `topic` from now on: in `on-pubsub` (`forward` none) or
    /// written by the host. `subscription` is none when the session had
    /// the topic already and only its kind of delivery changes.
    Add {
        topic: Arc<str>,
        forward: Option<FrameKind>,
        subscription: Option<pubsub::Subscription>,
    },
    /// Stop receiving `topic`.
    Remove(Arc<str>),
}

/// What an event leaves behind for the session.
pub struct EventOutcome {
    /// The attachment as the event left it.
    pub attachment: Vec<u8>,
    /// Its topic changes, in order.
    pub changes: Vec<TopicChange>,
}

/// The host side of a guest's `hibernation.session` for one event.
pub struct EventSession {
    path: Arc<str>,
    attachment: Vec<u8>,
    /// Where the event's sends go; none once the session is closing or
    /// over (`on-close`).
    outgoing: Option<mpsc::Sender<Box<Outgoing>>>,
    max_message: usize,
    /// The session's topics as the event has left them so far.
    topics: Vec<Arc<str>>,
    changes: Vec<TopicChange>,
    /// The last message the host wrote of each forwarded topic.
    last_forwarded: Vec<(Arc<str>, pubsub::Message)>,
}

impl EventSession {
    /// The session at `path` for one event: its `attachment` and `topics`,
    /// the last message forwarded on each topic, and where its sends go
    /// (none when it can send nothing more). Messages over `max_message`
    /// bytes are refused.
    pub(crate) fn new(
        path: Arc<str>,
        attachment: Vec<u8>,
        topics: Vec<Arc<str>>,
        last_forwarded: Vec<(Arc<str>, pubsub::Message)>,
        outgoing: Option<mpsc::Sender<Box<Outgoing>>>,
        max_message: usize,
    ) -> Self {
        Self {
            path,
            attachment,
            outgoing,
            max_message,
            topics,
            changes: Vec::new(),
            last_forwarded,
        }
    }

    /// What the event changed; its sends are over.
    pub fn finish(self) -> EventOutcome {
        EventOutcome {
            attachment: self.attachment,
            changes: self.changes,
        }
    }

    /// Replaces the attachment unless `bytes` is over [`MAX_ATTACHMENT`].
    pub fn set_attachment(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        if bytes.len() > MAX_ATTACHMENT {
            return Err(format!(
                "an attachment is at most {MAX_ATTACHMENT} bytes; this one is {}",
                bytes.len()
            ));
        }
        self.attachment = bytes;
        Ok(())
    }

    /// Checks that `topic` may be added: a valid name, and room for it
    /// unless the session has it already. Whether it has it.
    fn check_topic(&self, topic: &str) -> Result<bool, TopicError> {
        if pubsub::check(topic, &[]).is_err() {
            return Err(TopicError::InvalidName);
        }
        let known = self.topics.iter().any(|t| **t == *topic);
        if !known && self.topics.len() >= MAX_TOPICS {
            return Err(TopicError::TooMany);
        }
        Ok(known)
    }

    /// Records that `topic` is received from now on, in `on-pubsub`
    /// (`forward` none) or written by the host as `forward` frames.
    /// `subscription` starts now; none when the session had the topic.
    fn add_topic(
        &mut self,
        topic: &str,
        forward: Option<FrameKind>,
        subscription: Option<pubsub::Subscription>,
    ) {
        let topic: Arc<str> = match self.topics.iter().find(|t| ***t == *topic) {
            Some(known) => known.clone(),
            None => {
                let topic: Arc<str> = topic.into();
                self.topics.push(topic.clone());
                topic
            }
        };
        self.changes.push(TopicChange::Add {
            topic,
            forward,
            subscription,
        });
    }

    /// Records that `topic` is no longer received.
    fn remove_topic(&mut self, topic: &str) {
        if let Some(at) = self.topics.iter().position(|t| **t == *topic) {
            let topic = self.topics.remove(at);
            self.changes.push(TopicChange::Remove(topic));
        }
    }

    /// Starts the closing handshake; later sends fail.
    async fn close(&mut self, code: u16, reason: &str) -> Result<(), String> {
        let frame = close_frame_checked(code, reason)?;
        if let Some(outgoing) = self.outgoing.take() {
            let _ = outgoing.send(Box::new(Outgoing::Close(frame))).await;
        }
        Ok(())
    }
}

impl Host for HostState {}

impl HostState {
    /// Adds `topic` to `session`, with a subscription from now on when it
    /// is new to the session.
    async fn add_topic(
        &mut self,
        session: &Resource<EventSession>,
        topic: &str,
        forward: Option<FrameKind>,
    ) -> wasmtime::Result<Result<(), TopicError>> {
        let known = match self.table.get(session)?.check_topic(topic) {
            Ok(known) => known,
            Err(e) => return Ok(Err(e)),
        };
        let subscription = match known {
            true => None,
            false => Some(self.hooks.app.pubsub.clone().subscribe(topic).await),
        };
        self.table
            .get_mut(session)?
            .add_topic(topic, forward, subscription);
        Ok(Ok(()))
    }
}

impl HostSession for HostState {
    fn path(&mut self, session: Resource<EventSession>) -> wasmtime::Result<String> {
        Ok(self.table.get(&session)?.path.to_string())
    }

    fn attachment(&mut self, session: Resource<EventSession>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&session)?.attachment.clone())
    }

    fn set_attachment(
        &mut self,
        session: Resource<EventSession>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.table.get_mut(&session)?.set_attachment(bytes))
    }

    async fn send(
        &mut self,
        session: Resource<EventSession>,
        message: wit::Message,
    ) -> wasmtime::Result<Result<(), wit::SendError>> {
        let session = self.table.get(&session)?;
        let Some(outgoing) = session.outgoing.clone() else {
            return Ok(Err(wit::SendError::Closed));
        };
        let message = match message {
            wit::Message::Text(text) => Message::text(text),
            wit::Message::Binary(bytes) => Message::binary(bytes),
        };
        if message.len() > session.max_message {
            return Ok(Err(wit::SendError::TooLarge));
        }
        Ok(outgoing
            .send(Box::new(Outgoing::Message(message)))
            .await
            .map_err(|_| wit::SendError::Closed))
    }

    async fn close(
        &mut self,
        session: Resource<EventSession>,
        code: u16,
        reason: String,
    ) -> wasmtime::Result<()> {
        self.table
            .get_mut(&session)?
            .close(code, &reason)
            .await
            .map_err(wasmtime::Error::msg)
    }

    async fn subscribe(
        &mut self,
        session: Resource<EventSession>,
        topic: String,
    ) -> wasmtime::Result<Result<(), TopicError>> {
        self.add_topic(&session, &topic, None).await
    }

    async fn forward(
        &mut self,
        session: Resource<EventSession>,
        topic: String,
        kind: FrameKind,
    ) -> wasmtime::Result<Result<(), TopicError>> {
        self.add_topic(&session, &topic, Some(kind)).await
    }

    fn unsubscribe(
        &mut self,
        session: Resource<EventSession>,
        topic: String,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&session)?.remove_topic(&topic);
        Ok(())
    }

    fn last_forwarded(
        &mut self,
        session: Resource<EventSession>,
        topic: String,
    ) -> wasmtime::Result<Option<Published>> {
        let session = self.table.get(&session)?;
        Ok(session
            .last_forwarded
            .iter()
            .find(|(t, _)| **t == *topic)
            .map(|(_, message)| Published {
                id: message.id,
                body: message.body.to_vec(),
            }))
    }

    fn drop(&mut self, session: Resource<EventSession>) -> wasmtime::Result<()> {
        // The host owns the session and takes it back after the call; the
        // guest only ever borrows it.
        let _ = session;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(topics: usize) -> EventSession {
        let topics = (0..topics).map(|i| Arc::from(format!("t{i}"))).collect();
        EventSession::new("/h".into(), Vec::new(), topics, Vec::new(), None, 1024)
    }

    #[test]
    fn an_attachment_is_kept_up_to_16_kib() {
        let mut s = session(0);
        assert!(s.set_attachment(vec![7; MAX_ATTACHMENT]).is_ok());
        let refused = s.set_attachment(vec![8; MAX_ATTACHMENT + 1]);
        assert!(refused.unwrap_err().contains("16384"));
        assert_eq!(s.finish().attachment, vec![7; MAX_ATTACHMENT]);
    }

    #[test]
    fn topic_names_and_counts_are_checked() {
        let s = session(0);
        assert!(matches!(s.check_topic(""), Err(TopicError::InvalidName)));
        assert!(matches!(s.check_topic(&"a".repeat(256)), Ok(false)));
        assert!(matches!(
            s.check_topic(&"a".repeat(257)),
            Err(TopicError::InvalidName)
        ));
        let full = session(MAX_TOPICS);
        assert!(matches!(full.check_topic("new"), Err(TopicError::TooMany)));
        // A topic it has already changes kind, taking no more room.
        assert!(matches!(full.check_topic("t3"), Ok(true)));
        let mut room = session(MAX_TOPICS - 1);
        room.add_topic("last", None, None);
        assert!(matches!(room.check_topic("more"), Err(TopicError::TooMany)));
        room.remove_topic("t0");
        assert!(matches!(room.check_topic("more"), Ok(false)));
        assert_eq!(room.finish().changes.len(), 2);
    }
}
