//! Publish/subscribe between the instances of one app: a request or a
//! websocket session publishes, every subscriber of the topic receives.
//!
//! Topics belong to the app; each numbers its messages 1, 2, 3, … and keeps
//! the last `pubsub_history` (a manifest setting) for [`recent`]. A
//! subscriber that falls `pubsub_buffer` messages behind receives
//! [`Event::Lagged`] with how many it missed.
//!
//! ```no_run
//! use cyclone_sdk::pubsub::{self, Event};
//!
//! # async fn example() -> Result<(), pubsub::PublishError> {
//! let mut updates = pubsub::subscribe("room");          // from now on
//! let id = pubsub::publish("room", "hello")?;
//! if let Event::Message(message) = updates.next().await {
//!     assert_eq!(message.id, id);
//!     assert_eq!(message.text(), Some("hello"));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! To wait for news after a cursor without missing any (long polling),
//! subscribe first, then read what was kept, then wait:
//!
//! ```no_run
//! use cyclone_sdk::pubsub;
//!
//! # async fn updates(cursor: Option<u64>) -> Vec<pubsub::Message> {
//! let mut live = pubsub::subscribe("room");
//! let kept = pubsub::recent("room", cursor);
//! if !kept.is_empty() {
//!     return kept;
//! }
//! loop {
//!     match live.next().await {
//!         pubsub::Event::Message(message) => return vec![message],
//!         pubsub::Event::Lagged(_) => return pubsub::recent("room", cursor),
//!     }
//! }
//! # }
//! ```

use crate::bindings::cyclone::platform::pubsub as wit;

/// A published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its number within its topic, counting from 1.
    pub id: u64,
    /// What was published.
    pub body: Vec<u8>,
}

impl Message {
    /// The body as text, when it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The next message.
    Message(Message),
    /// This many messages were skipped because the subscriber fell behind.
    Lagged(u64),
}

/// Why a message was not published: the topic name is empty or over 256
/// bytes, or the body is over 1 MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError(pub String);

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PublishError {}

/// Publishes `body` on `topic`; returns its number.
pub fn publish(topic: &str, body: impl AsRef<[u8]>) -> Result<u64, PublishError> {
    wit::publish(topic, body.as_ref()).map_err(PublishError)
}

/// The kept messages of `topic` numbered after `after` (all of them when
/// `None`), oldest first.
pub fn recent(topic: &str, after: Option<u64>) -> Vec<Message> {
    wit::recent(topic, after)
        .into_iter()
        .map(from_wit)
        .collect()
}

/// Subscribes to `topic`: every message published from now on. Dropping the
/// subscription unsubscribes.
pub fn subscribe(topic: &str) -> Subscription {
    Subscription {
        inner: wit::Subscription::new(topic),
    }
}

/// Messages of one topic; see [`subscribe`].
#[derive(Debug)]
pub struct Subscription {
    inner: wit::Subscription,
}

impl Subscription {
    /// Waits for the next event. The instance is suspended meanwhile; the
    /// future may be dropped (say, by [`select`](crate::time::select))
    /// without losing an event.
    pub async fn next(&mut self) -> Event {
        #[cfg(not(feature = "wasip3"))]
        loop {
            if let Some(event) = self.inner.try_next() {
                return from_wit_event(event);
            }
            crate::time::wait_for(self.inner.subscribe()).await;
        }
        #[cfg(feature = "wasip3")]
        match crate::bindings::cyclone::platform::pubsub_async::next(&self.inner).await {
            Some(event) => from_wit_event(event),
            // The topic delivers no more: nothing will come.
            None => std::future::pending().await,
        }
    }
}

pub(crate) fn from_wit_event(event: wit::Event) -> Event {
    match event {
        wit::Event::Message(message) => Event::Message(from_wit(message)),
        wit::Event::Lagged(n) => Event::Lagged(n),
    }
}

pub(crate) fn from_wit(message: wit::Message) -> Message {
    Message {
        id: message.id,
        body: message.body,
    }
}
