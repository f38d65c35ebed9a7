//! The single end-to-end test binary: the real program (and, where needed, the local zone) on
//! random loopback ports, driven over HTTP as WeCom and the app would.

mod backend;
mod helpers;

mod bench;
mod callback;
mod native;

mod app_cli;
mod image;
mod local_zone;
mod local_zone_data;
mod local_zone_loop;
mod local_zone_models;
mod local_zone_sdk;

mod abilities;
mod events;
mod jobs;
mod workflows;
// Reliability and security (README "Reliability and security").
mod bad_input;
mod capture;
mod child;
mod crash;
mod faults;
mod forgery;
mod secrets;
