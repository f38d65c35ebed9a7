//! The single end-to-end test binary: the real program (and, where needed, the local zone) on
//! random loopback ports, driven over HTTP as WeCom and the app would.

mod helpers;

mod bench;
mod callback;

mod image;
mod local_zone;
mod local_zone_sdk;
