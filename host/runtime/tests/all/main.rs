//! Integration tests of aegis-runtime against real servers and processes on 127.0.0.1.

mod logs;
mod plain_http;
mod probes;
mod store;
