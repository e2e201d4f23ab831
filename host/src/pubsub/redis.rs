//! Pub/sub through a Redis server: every host on it shares each app's topics.
//!
//! A topic `T` of app `A` is three Redis names under `cyclone:pubsub:N:A:T`
//! (`N` the length of `A`, so no app can reach into another's names): the
//! counter `…:n` numbering its messages, the stream `…:log` keeping the
//! last `pubsub_history` of them (`XADD … MAXLEN ~`) for `recent`, and the
//! channel `…` itself. One Lua script increments, appends and publishes, so
//! numbers are in publishing order on every host.
//!
//! Each host keeps one RESP3 connection (the connection manager's, which
//! re-subscribes after reconnecting) subscribed to the channels its guests
//! listen to, and fans each message out to them through the same broadcast
//! channels as the in-process backend. A host notices a gap two ways: a
//! message whose number is not the next one, and, after the connection was
//! lost, a counter that moved while it was away. Either way its subscribers
//! get `Lagged` with the count (which may overstate it by the messages
//! published while it resubscribed), never a silent gap.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{Event, Message, PubSub, PublishError, Subscription, check};
use crate::kv::REDIS_CALL_TIMEOUT;
use crate::kv::redis::{connect, runtime};

/// One host's connection to a Redis server for pub/sub, shared by its apps.
pub struct Bus {
    connection: ConnectionManager,
    topics: Mutex<HashMap<String, Topic>>,
    control: mpsc::UnboundedSender<Control>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").finish_non_exhaustive()
    }
}

/// A channel this host listens to for its guests.
struct Topic {
    sender: broadcast::Sender<Event>,
    /// The number of the last message delivered or counted as missed.
    last_id: u64,
    /// Redis confirmed the subscription.
    subscribed: bool,
}

/// Work for the task that owns the subscriptions, done in order.
enum Control {
    /// Listen to a channel; answer once Redis confirmed (or failed).
    Subscribe(String, oneshot::Sender<()>),
    /// Stop listening, unless a guest subscribed again meanwhile.
    Unsubscribe(String),
    /// The connection was lost: wait for the server, re-subscribe, count gaps.
    Recover,
}

impl Bus {
    /// Connects (in the background) to the server at `url`.
    pub fn connect(url: &str) -> Result<Arc<Self>, String> {
        let url = if url.contains("protocol=") {
            url.to_owned()
        } else if url.contains('?') {
            format!("{url}&protocol=resp3")
        } else {
            format!("{url}?protocol=resp3")
        };
        let (pushes, pushed) = mpsc::unbounded_channel();
        let connection = connect(&url, |config| {
            config
                .set_push_sender(pushes)
                .set_automatic_resubscription()
        })?;
        let (control, controlled) = mpsc::unbounded_channel();
        let bus = Arc::new(Self {
            connection,
            topics: Mutex::new(HashMap::new()),
            control,
        });
        runtime().spawn(receive(Arc::downgrade(&bus), pushed));
        runtime().spawn(manage(Arc::downgrade(&bus), controlled));
        Ok(bus)
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, Topic>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `event` to this host's subscribers of `channel`.
    fn deliver(&self, channel: &str, id: u64, body: Bytes) {
        let mut topics = self.topics();
        let Some(topic) = topics.get_mut(channel) else {
            return;
        };
        if topic.last_id > 0 && id > topic.last_id + 1 {
            let _ = topic.sender.send(Event::Lagged(id - topic.last_id - 1));
        }
        topic.last_id = topic.last_id.max(id);
        let _ = topic.sender.send(Event::Message(Message { id, body }));
    }

    async fn subscribe(self: &Arc<Self>, channel: String, buffer: usize) -> Subscription {
        let receiver = self
            .topics()
            .entry(channel.clone())
            .or_insert_with(|| Topic {
                sender: broadcast::channel(buffer).0,
                last_id: 0,
                subscribed: false,
            })
            .sender
            .subscribe();
        let (done, confirmed) = oneshot::channel();
        if self
            .control
            .send(Control::Subscribe(channel.clone(), done))
            .is_ok()
        {
            // Once Redis confirms, nothing published later is missed; if it
            // does not answer in time, the subscription starts when it does.
            let _ = tokio::time::timeout(REDIS_CALL_TIMEOUT, confirmed).await;
        }
        Subscription {
            receiver,
            pending: None,
            _interest: Some(Interest {
                bus: Arc::downgrade(self),
                channel,
            }),
        }
    }
}

/// A guest's interest in a channel; dropping the last one unsubscribes.
pub struct Interest {
    bus: Weak<Bus>,
    channel: String,
}

impl Drop for Interest {
    fn drop(&mut self) {
        let Some(bus) = self.bus.upgrade() else {
            return;
        };
        let mut topics = bus.topics();
        if topics
            .get(&self.channel)
            .is_some_and(|topic| topic.sender.receiver_count() == 0)
        {
            topics.remove(&self.channel);
            let _ = bus
                .control
                .send(Control::Unsubscribe(std::mem::take(&mut self.channel)));
        }
    }
}

/// Reads what Redis pushes: messages, and word that the connection was lost.
async fn receive(bus: Weak<Bus>, mut pushed: mpsc::UnboundedReceiver<PushInfo>) {
    while let Some(push) = pushed.recv().await {
        let Some(bus) = bus.upgrade() else { return };
        match push.kind {
            PushKind::Message => {
                let Some(message) = redis::Msg::from_push_info(push) else {
                    continue;
                };
                let payload = message.get_payload_bytes();
                match parse(payload) {
                    Some((id, body)) => bus.deliver(message.get_channel_name(), id, body),
                    None => tracing::warn!(
                        channel = message.get_channel_name(),
                        "pub/sub: ignored a message not published by cyclone"
                    ),
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("pub/sub: lost the connection to Redis; reconnecting");
                let _ = bus.control.send(Control::Recover);
            }
            _ => {}
        }
    }
}

/// A published payload: the message number in decimal, `:`, the body.
fn parse(payload: &[u8]) -> Option<(u64, Bytes)> {
    let colon = payload.iter().position(|&b| b == b':')?;
    let id = std::str::from_utf8(&payload[..colon]).ok()?.parse().ok()?;
    Some((id, Bytes::copy_from_slice(&payload[colon + 1..])))
}

/// Owns subscribing and unsubscribing, one request at a time.
async fn manage(bus: Weak<Bus>, mut controlled: mpsc::UnboundedReceiver<Control>) {
    while let Some(work) = controlled.recv().await {
        let Some(bus) = bus.upgrade() else { return };
        let mut connection = bus.connection.clone();
        match work {
            Control::Subscribe(channel, done) => {
                let needed = bus
                    .topics()
                    .get(&channel)
                    .is_some_and(|topic| !topic.subscribed);
                if needed && !subscribe(&bus, &mut connection, &channel).await {
                    let _ = bus.control.send(Control::Recover);
                }
                let _ = done.send(());
            }
            Control::Unsubscribe(channel) => {
                if !bus.topics().contains_key(&channel) {
                    let unsubscribe = connection.unsubscribe(&channel);
                    let _ = tokio::time::timeout(REDIS_CALL_TIMEOUT, unsubscribe).await;
                }
            }
            Control::Recover => recover(&bus, &mut connection).await,
        }
    }
}

/// Subscribes to `channel` and starts its numbering at the topic's counter.
async fn subscribe(bus: &Bus, connection: &mut ConnectionManager, channel: &str) -> bool {
    let subscribed = tokio::time::timeout(REDIS_CALL_TIMEOUT, connection.subscribe(channel)).await;
    if !matches!(subscribed, Ok(Ok(()))) {
        return false;
    }
    let counter = counter(connection, channel).await;
    let mut topics = bus.topics();
    if let Some(topic) = topics.get_mut(channel) {
        topic.subscribed = true;
        if let Some(counter) = counter {
            topic.last_id = topic.last_id.max(counter);
        }
    }
    true
}

async fn counter(connection: &mut ConnectionManager, channel: &str) -> Option<u64> {
    let mut get = redis::cmd("GET");
    get.arg(format!("{channel}:n"));
    let get = get.query_async::<Option<u64>>(connection);
    match tokio::time::timeout(REDIS_CALL_TIMEOUT, get).await {
        Ok(Ok(counter)) => Some(counter.unwrap_or(0)),
        _ => None,
    }
}

/// After the connection was lost: waits until Redis answers, subscribes to
/// what is not subscribed, and reports what each topic missed meanwhile.
async fn recover(bus: &Bus, connection: &mut ConnectionManager) {
    loop {
        let ping = redis::cmd("PING");
        let ping = ping.query_async::<String>(connection);
        if matches!(
            tokio::time::timeout(REDIS_CALL_TIMEOUT, ping).await,
            Ok(Ok(_))
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let channels: Vec<String> = bus.topics().keys().cloned().collect();
    for channel in channels {
        // Subscribe again and wait for Redis to confirm, even if the
        // connection manager re-subscribes by itself: only once confirmed
        // is every later message delivered, so the counter read after it
        // covers exactly what was missed.
        let subscribed =
            tokio::time::timeout(REDIS_CALL_TIMEOUT, connection.subscribe(&channel)).await;
        if !matches!(subscribed, Ok(Ok(()))) {
            let _ = bus.control.send(Control::Recover);
            return;
        }
        let Some(counter) = counter(connection, &channel).await else {
            let _ = bus.control.send(Control::Recover);
            return;
        };
        let mut topics = bus.topics();
        if let Some(topic) = topics.get_mut(&channel) {
            topic.subscribed = true;
            if counter > topic.last_id {
                let _ = topic.sender.send(Event::Lagged(counter - topic.last_id));
                topic.last_id = counter;
            }
        }
    }
    tracing::info!("pub/sub: connected to Redis again");
}

/// Numbers, keeps and publishes one message: `KEYS` are the counter, the
/// stream and the channel; `ARGV` the body and the history to keep.
static PUBLISH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local id = redis.call('INCR', KEYS[1])
        local keep = tonumber(ARGV[2])
        if keep > 0 then
            redis.call('XADD', KEYS[2], 'MAXLEN', '~', keep, id .. '-1', 'body', ARGV[1])
        end
        redis.call('PUBLISH', KEYS[3], id .. ':' .. ARGV[1])
        return id
        ",
    )
});

/// One app's topics on a [`Bus`].
#[derive(Debug)]
pub struct RedisPubSub {
    bus: Arc<Bus>,
    /// `cyclone:pubsub:N:APP:`, prefixed to topic names.
    prefix: String,
    history: usize,
    buffer: usize,
}

impl RedisPubSub {
    /// App `app`'s topics, keeping `history` messages each and letting a
    /// subscriber fall `buffer` messages behind.
    pub fn new(bus: Arc<Bus>, app: &str, history: usize, buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            bus,
            prefix: format!("cyclone:pubsub:{}:{app}:", app.len()),
            history,
            buffer: buffer.max(1),
        })
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }
}

/// A stream entry's id, `N-1`, gives the message number `N`.
fn message_id(entry: &str) -> Option<u64> {
    entry.split_once('-')?.0.parse().ok()
}

#[async_trait::async_trait]
impl PubSub for RedisPubSub {
    async fn publish(&self, topic: &str, body: Bytes) -> Result<u64, PublishError> {
        check(topic, &body)?;
        let channel = self.channel(topic);
        let mut connection = self.bus.connection.clone();
        let mut script = PUBLISH.key(format!("{channel}:n"));
        script.key(format!("{channel}:log")).key(&channel);
        script.arg(body.as_ref()).arg(self.history);
        match tokio::time::timeout(REDIS_CALL_TIMEOUT, script.invoke_async(&mut connection)).await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => Err(PublishError::Unavailable(format!("Redis: {e}"))),
            Err(_) => Err(PublishError::Unavailable(format!(
                "Redis did not answer within {} ms",
                REDIS_CALL_TIMEOUT.as_millis()
            ))),
        }
    }

    async fn recent(&self, topic: &str, after: Option<u64>) -> Vec<Message> {
        if self.history == 0 || topic.is_empty() || topic.len() > super::MAX_TOPIC_BYTES {
            return Vec::new();
        }
        let start = after.map_or_else(|| "-".to_owned(), |after| (after + 1).to_string());
        let mut connection = self.bus.connection.clone();
        let mut range = redis::cmd("XREVRANGE");
        range
            .arg(format!("{}:log", self.channel(topic)))
            .arg("+")
            .arg(start)
            .arg("COUNT")
            .arg(self.history);
        let range = range.query_async::<redis::streams::StreamRangeReply>(&mut connection);
        let reply = match tokio::time::timeout(REDIS_CALL_TIMEOUT, range).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::warn!("pub/sub: cannot read the history of `{topic}` from Redis: {e}");
                return Vec::new();
            }
            Err(_) => {
                tracing::warn!("pub/sub: Redis did not answer for the history of `{topic}`");
                return Vec::new();
            }
        };
        let mut messages: Vec<Message> = reply
            .ids
            .iter()
            .filter_map(|entry| {
                Some(Message {
                    id: message_id(&entry.id)?,
                    body: Bytes::from(entry.get::<Vec<u8>>("body")?),
                })
            })
            .collect();
        messages.reverse();
        messages
    }

    async fn subscribe(&self, topic: &str) -> Subscription {
        self.bus.subscribe(self.channel(topic), self.buffer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_and_stream_ids_carry_the_message_number() {
        assert_eq!(parse(b"12:a:b"), Some((12, Bytes::from_static(b"a:b"))));
        assert_eq!(parse(b"7:"), Some((7, Bytes::new())));
        assert_eq!(parse(b"x:y"), None);
        assert_eq!(parse(b"12"), None);
        assert_eq!(message_id("42-1"), Some(42));
        assert_eq!(message_id("nope"), None);
    }
}
