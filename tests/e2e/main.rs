//! End-to-end tests: the real `aegis-host` binary supervising the real example service, with the bundled plugins
//! compiled from source. Everything listens on 127.0.0.1 and every process is stopped when its test ends.

mod alerting;
mod cli;
mod cluster;
mod console;
mod crash;
mod ctl;
mod history;
mod isolation;
mod lab_replay;
mod lab_scenarios;
mod operations;
mod robustness;
mod scrape;
mod shadow;
mod supervise;
mod systemd;
