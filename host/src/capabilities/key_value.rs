//! `wasi:keyvalue@0.2.0-draft2`: the stores the app is granted.
//!
//! The standard's error has three cases; `too-large` and `unavailable`
//! travel as `other` with that prefix (see `wit/world.wit`), which the SDK
//! turns back into its own cases.

use std::sync::Arc;

use wasmtime::component::Resource;

use super::HostState;
use super::bindings::wasi::keyvalue::atomics::{self, CasError};
use super::bindings::wasi::keyvalue::batch;
use super::bindings::wasi::keyvalue::store::{self, KeyResponse};
use crate::kv::{self, Bucket, Cas, Store};

type Result<T> = wasmtime::Result<std::result::Result<T, store::Error>>;

fn to_guest(e: kv::Error) -> store::Error {
    match e {
        kv::Error::AccessDenied => store::Error::AccessDenied,
        kv::Error::NoSuchStore => store::Error::NoSuchStore,
        other => store::Error::Other(other.to_string()),
    }
}

impl HostState {
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<Arc<Store>> {
        Ok(self.table.get(bucket)?.0.clone())
    }
}

impl store::Host for HostState {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>> {
        let app = &self.hooks.app;
        let Some(store) = app.key_value.get(&identifier) else {
            if !self.kv_denial_logged {
                tracing::warn!(
                    request = self.hooks.request_id,
                    app = %app.name,
                    "key-value store `{identifier}` denied: the app's key_value_stores does not list it"
                );
                self.kv_denial_logged = true;
            }
            return Ok(Err(store::Error::AccessDenied));
        };
        let bucket = Bucket(store.clone());
        Ok(Ok(self.table.push(bucket)?))
    }
}

impl store::HostBucket for HostState {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>> {
        let store = self.bucket(&bucket)?;
        Ok(store.get(key).await.map_err(to_guest))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Result<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.set(key, value).await.map_err(to_guest))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.delete(key).await.map_err(to_guest))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool> {
        let store = self.bucket(&bucket)?;
        Ok(store.exists(key).await.map_err(to_guest))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Result<KeyResponse> {
        let store = self.bucket(&bucket)?;
        Ok(store
            .list_keys(cursor)
            .await
            .map(|(keys, cursor)| KeyResponse { keys, cursor })
            .map_err(to_guest))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for HostState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Result<i64> {
        let store = self.bucket(&bucket)?;
        Ok(store.increment(key, delta).await.map_err(to_guest))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<std::result::Result<(), CasError>> {
        let Cas {
            store,
            key,
            current,
        } = self.table.delete(cas)?;
        match store.compare_and_swap(key.clone(), current, value).await {
            Ok(Ok(())) => Ok(Ok(())),
            Ok(Err(found)) => {
                let retry = self.table.push(Cas {
                    store,
                    key,
                    current: found,
                })?;
                Ok(Err(CasError::CasFailed(retry)))
            }
            Err(e) => Ok(Err(CasError::StoreError(to_guest(e)))),
        }
    }
}

impl atomics::HostCas for HostState {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Resource<Cas>> {
        let store = self.bucket(&bucket)?;
        let current = match store.get(key.clone()).await {
            Ok(current) => current,
            Err(e) => return Ok(Err(to_guest(e))),
        };
        Ok(Ok(self.table.push(Cas {
            store,
            key,
            current,
        })?))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for HostState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>> {
        let store = self.bucket(&bucket)?;
        Ok(store.get_many(keys).await.map_err(to_guest))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.set_many(key_values).await.map_err(to_guest))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Result<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.delete_many(keys).await.map_err(to_guest))
    }
}
