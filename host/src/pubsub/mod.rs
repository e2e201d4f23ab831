//! Publish/subscribe between the instances of one app.
//!
//! [`PubSub`] is what guests' `cyclone:platform/pubsub` calls reach; each app
//! has its own, so topics never cross apps. [`InProcess`] is the embedded
//! backend: one `tokio::sync::broadcast` channel per topic, holding at most
//! `pubsub_buffer` messages a subscriber has not read yet, and a history of
//! the last `pubsub_history` messages for [`PubSub::recent`]. A subscriber
//! that falls further behind gets [`Event::Lagged`] with the count it
//! missed, never a silent gap. [`redis::RedisPubSub`] shares topics
//! between every host on one Redis server.

pub mod redis;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// The largest message body, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// A published message and its number within its topic (1, 2, 3, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message's number within its topic.
    pub id: u64,
    /// What was published.
    pub body: Bytes,
}

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The next message.
    Message(Message),
    /// This many messages were skipped because the subscriber fell behind.
    Lagged(u64),
}

/// Why a message was not published.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// The topic name is empty or too long.
    #[error("topic names are 1 to {MAX_TOPIC_BYTES} bytes long")]
    Topic,
    /// The body is too big.
    #[error("a message body is at most {MAX_MESSAGE_BYTES} bytes; this one is {0}")]
    TooLarge(usize),
    /// The backend cannot be reached now.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Checks a topic name and a body before publishing.
pub fn check(topic: &str, body: &[u8]) -> Result<(), PublishError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return Err(PublishError::Topic);
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(PublishError::TooLarge(body.len()));
    }
    Ok(())
}

/// A pub/sub backend for one app.
#[async_trait::async_trait]
pub trait PubSub: Send + Sync + std::fmt::Debug {
    /// Publishes `body` on `topic`; returns its number.
    async fn publish(&self, topic: &str, body: Bytes) -> Result<u64, PublishError>;
    /// The kept messages of `topic` numbered after `after` (all when `None`),
    /// oldest first; none when the backend cannot be reached.
    async fn recent(&self, topic: &str, after: Option<u64>) -> Vec<Message>;
    /// A subscription to `topic` from now on.
    async fn subscribe(&self, topic: &str) -> Subscription;
}

/// Messages of one topic from the moment of subscribing.
pub struct Subscription {
    receiver: broadcast::Receiver<Event>,
    /// An event taken by [`Subscription::ready`] and not yet handed out.
    pending: Option<Event>,
    /// Released after the receiver: lets a shared backend stop listening
    /// to a topic nobody here reads any more.
    _interest: Option<redis::Interest>,
}

impl Subscription {
    /// Waits for the next event; `None` once the topic can no longer deliver.
    pub async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.pending.take() {
            return Some(event);
        }
        match self.receiver.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Event::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// Waits until [`Subscription::try_next`] has an event.
    pub async fn ready(&mut self) {
        if self.pending.is_none() {
            self.pending = self.next().await;
        }
    }

    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        if let Some(event) = self.pending.take() {
            return Some(event);
        }
        match self.receiver.try_recv() {
            Ok(event) => Some(event),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Event::Lagged(n)),
            Err(_) => None,
        }
    }
}

/// The embedded backend: topics live in this process.
#[derive(Debug)]
pub struct InProcess {
    history: usize,
    buffer: usize,
    topics: Mutex<HashMap<String, Topic>>,
}

#[derive(Debug)]
struct Topic {
    last_id: u64,
    kept: VecDeque<Message>,
    sender: broadcast::Sender<Event>,
}

impl InProcess {
    /// A backend keeping `history` messages per topic and letting a subscriber
    /// fall `buffer` messages behind.
    pub fn new(history: usize, buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            history,
            buffer: buffer.max(1),
            topics: Mutex::new(HashMap::new()),
        })
    }

    fn topic<'a>(&self, topics: &'a mut HashMap<String, Topic>, name: &str) -> &'a mut Topic {
        topics.entry(name.to_owned()).or_insert_with(|| Topic {
            last_id: 0,
            kept: VecDeque::new(),
            sender: broadcast::channel(self.buffer).0,
        })
    }
}

#[async_trait::async_trait]
impl PubSub for InProcess {
    async fn publish(&self, topic: &str, body: Bytes) -> Result<u64, PublishError> {
        check(topic, &body)?;
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let entry = self.topic(&mut topics, topic);
        entry.last_id += 1;
        let message = Message {
            id: entry.last_id,
            body,
        };
        if self.history > 0 {
            if entry.kept.len() == self.history {
                entry.kept.pop_front();
            }
            entry.kept.push_back(message.clone());
        }
        // No subscribers is not an error: the message is only kept.
        let _ = entry.sender.send(Event::Message(message));
        let id = entry.last_id;
        // A topic nobody listens to and that keeps nothing holds only its
        // counter; drop it so unused names do not accumulate.
        if self.history == 0 && entry.sender.receiver_count() == 0 {
            topics.remove(topic);
        }
        Ok(id)
    }

    async fn recent(&self, topic: &str, after: Option<u64>) -> Vec<Message> {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.get(topic).map_or_else(Vec::new, |t| {
            t.kept
                .iter()
                .filter(|m| after.is_none_or(|after| m.id > after))
                .cloned()
                .collect()
        })
    }

    async fn subscribe(&self, topic: &str) -> Subscription {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        Subscription {
            receiver: self.topic(&mut topics, topic).sender.subscribe(),
            pending: None,
            _interest: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test]
    async fn subscribers_get_messages_in_order_with_numbers() {
        let bus = InProcess::new(0, 8);
        let mut a = bus.subscribe("room").await;
        let mut b = bus.subscribe("room").await;
        assert_eq!(bus.publish("room", body("one")).await, Ok(1));
        assert_eq!(bus.publish("room", body("two")).await, Ok(2));
        for sub in [&mut a, &mut b] {
            for (id, text) in [(1, "one"), (2, "two")] {
                assert_eq!(
                    sub.next().await,
                    Some(Event::Message(Message {
                        id,
                        body: body(text)
                    }))
                );
            }
            assert_eq!(sub.try_next(), None);
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_how_many_it_missed() {
        let bus = InProcess::new(0, 2);
        let mut slow = bus.subscribe("t").await;
        for i in 0..5 {
            bus.publish("t", body(&i.to_string())).await.unwrap();
        }
        assert_eq!(slow.next().await, Some(Event::Lagged(3)));
        assert!(matches!(
            slow.next().await,
            Some(Event::Message(Message { id: 4, .. }))
        ));
    }

    #[tokio::test]
    async fn history_keeps_the_last_messages_and_filters_by_cursor() {
        let bus = InProcess::new(3, 8);
        for i in 1..=5 {
            bus.publish("t", body(&i.to_string())).await.unwrap();
        }
        let mut ids = Vec::new();
        for after in [None, Some(3), Some(5)] {
            let kept: Vec<u64> = bus.recent("t", after).await.iter().map(|m| m.id).collect();
            ids.push(kept);
        }
        assert_eq!(ids, [vec![3, 4, 5], vec![4, 5], vec![]]);
        assert!(bus.recent("other", None).await.is_empty());
    }

    #[tokio::test]
    async fn bad_topics_and_big_bodies_are_refused() {
        let bus = InProcess::new(0, 8);
        assert_eq!(bus.publish("", body("x")).await, Err(PublishError::Topic));
        assert_eq!(
            bus.publish(&"x".repeat(257), body("x")).await,
            Err(PublishError::Topic)
        );
        let big = Bytes::from(vec![0; MAX_MESSAGE_BYTES + 1]);
        assert_eq!(
            bus.publish("t", big).await,
            Err(PublishError::TooLarge(MAX_MESSAGE_BYTES + 1))
        );
    }
}
