//! Host bindings for `wit/`: the one `bindgen!` in the host. WASI interfaces
//! map onto wasmtime-wasi's and wasmtime-wasi-http's own bindings, so only
//! cyclone's interfaces are generated here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "cyclone:platform/handler",
    imports: {
        default: trappable,
        "cyclone:platform/websocket.[method]session.send": async | trappable,
        "cyclone:platform/websocket.[method]session.close": async | trappable,
        "cyclone:platform/hibernation.[method]session.send": async | trappable,
        "cyclone:platform/hibernation.[method]session.close": async | trappable,
        "cyclone:platform/hibernation.[method]session.subscribe": async | trappable,
        "cyclone:platform/hibernation.[method]session.forward": async | trappable,
        "cyclone:platform/pubsub.publish": async | trappable,
        "cyclone:platform/pubsub.recent": async | trappable,
        "cyclone:platform/pubsub.[constructor]subscription": async | trappable,
        "wasi:keyvalue": async | trappable,
        "cyclone:platform/static-files.url": async | trappable,
    },
    exports: { default: async },
    with: {
        "wasi:cli": wasmtime_wasi::p2::bindings::cli,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "cyclone:platform/pubsub.subscription": crate::capabilities::pubsub::Subscription,
        "cyclone:platform/websocket.session": crate::capabilities::websocket::Session,
        "cyclone:platform/hibernation.session": crate::capabilities::hibernation::EventSession,
        "wasi:keyvalue/store.bucket": crate::kv::Bucket,
        "wasi:keyvalue/atomics.cas": crate::kv::Cas,
    },
});
