//! `cyclone:platform/pubsub`: publish and subscribe within the guest's app.

use bytes::Bytes;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::HostState;
use super::bindings::cyclone::platform::pubsub::{Event, Host, HostSubscription, Message};
use crate::pubsub::{self, Subscription};

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
        Ok(self.table.push(subscription)?)
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
        let event = self.table.get_mut(&subscription)?.try_next();
        if event.is_some() {
            self.cpu.renew();
        }
        Ok(event.map(|event| match event {
            pubsub::Event::Message(message) => Event::Message(to_guest(message)),
            pubsub::Event::Lagged(n) => Event::Lagged(n),
        }))
    }

    fn drop(&mut self, subscription: Resource<Subscription>) -> wasmtime::Result<()> {
        self.table.delete(subscription)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Pollable for Subscription {
    async fn ready(&mut self) {
        Subscription::ready(self).await;
    }
}

fn to_guest(message: pubsub::Message) -> Message {
    Message {
        id: message.id,
        body: message.body.into(),
    }
}
