//! `cyclone:platform/pubsub`: publish and subscribe within the guest's app,
//! and `pubsub-async`, the wait of WASI 0.3 guests.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{Accessor, Resource};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::HostState;
use super::bindings::cyclone::platform::pubsub::{Event, Host, HostSubscription, Message};
use super::bindings::cyclone::platform::pubsub_async;
use crate::pubsub;

/// A guest's subscription. Shared, because a WASI 0.3 guest's `next` waits
/// outside the store, which it must not hold while it waits.
pub struct Subscription(Arc<tokio::sync::Mutex<pubsub::Subscription>>);

impl Subscription {
    /// The next event if one is waiting (never contended: a guest's calls
    /// on one subscription do not overlap, and a `next` it cancelled has
    /// released the lock).
    fn try_next(&self) -> Option<pubsub::Event> {
        self.0.try_lock().ok()?.try_next()
    }
}

impl Host for HostState {
    async fn publish(
        &mut self,
        topic: String,
        body: Vec<u8>,
    ) -> wasmtime::Result<Result<u64, String>> {
        let pubsub = self.hooks.app.pubsub.clone();
        let published = pubsub.publish(&topic, Bytes::from(body)).await;
        if published.is_ok() {
            self.hooks.app.published.inc();
        }
        Ok(published.map_err(|e| e.to_string()))
    }

    async fn recent(
        &mut self,
        topic: String,
        after: Option<u64>,
    ) -> wasmtime::Result<Vec<Message>> {
        let pubsub = self.hooks.app.pubsub.clone();
        Ok(pubsub
            .recent(&topic, after)
            .await
            .into_iter()
            .map(to_guest)
            .collect())
    }
}

impl HostSubscription for HostState {
    async fn new(&mut self, topic: String) -> wasmtime::Result<Resource<Subscription>> {
        let pubsub = self.hooks.app.pubsub.clone();
        let subscription = pubsub.subscribe(&topic).await;
        Ok(self
            .table
            .push(Subscription(Arc::new(tokio::sync::Mutex::new(
                subscription,
            ))))?)
    }

    fn subscribe(
        &mut self,
        subscription: Resource<Subscription>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(&mut self.table, subscription)
    }

    fn try_next(
        &mut self,
        subscription: Resource<Subscription>,
    ) -> wasmtime::Result<Option<Event>> {
        let event = self.table.get(&subscription)?.try_next();
        if event.is_some() {
            self.cpu.renew();
        }
        Ok(event.map(to_guest_event))
    }

    fn drop(&mut self, subscription: Resource<Subscription>) -> wasmtime::Result<()> {
        self.table.delete(subscription)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Pollable for Subscription {
    async fn ready(&mut self) {
        self.0.lock().await.ready().await;
    }
}

impl<T> pubsub_async::HostWithStore<T> for HasPubSub {
    async fn next(
        store: &Accessor<T, Self>,
        subscription: Resource<Subscription>,
    ) -> wasmtime::Result<Option<Event>> {
        let shared =
            store.with(|mut view| view.get().table.get(&subscription).map(|s| s.0.clone()))?;
        let event = shared.lock().await.next().await;
        if event.is_some() {
            store.with(|mut view| view.get().cpu.renew());
        }
        Ok(event.map(to_guest_event))
    }
}

impl pubsub_async::Host for HostState {}

/// The `HasData` of `pubsub-async`, whose waits run outside the store.
pub(super) struct HasPubSub;

impl wasmtime::component::HasData for HasPubSub {
    type Data<'a> = &'a mut HostState;
}

fn to_guest_event(event: pubsub::Event) -> Event {
    match event {
        pubsub::Event::Message(message) => Event::Message(to_guest(message)),
        pubsub::Event::Lagged(n) => Event::Lagged(n),
    }
}

fn to_guest(message: pubsub::Message) -> Message {
    Message {
        id: message.id,
        body: message.body.into(),
    }
}
