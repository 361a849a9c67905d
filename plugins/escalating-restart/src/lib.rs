//! `escalating-restart`: restart the service a few times; if it keeps failing, notify a human once; after that, wait
//! and ask again later instead of restarting in a loop (monit's "if N restarts within M cycles then unmonitor", with a
//! way back).
//!
//! Config (all optional):
//! - `restarts` — restart attempts before escalating (default 3)
//! - `wait_ms`  — how long to wait between later decisions once escalated (default 300000, five minutes)
//! - `notify`   — `true` to notify once after the last restart (default), `false` to go straight to waiting

use aegis_plugin_sdk::{Action, Config, Failure, Policy, RecoveryStrategy, ServiceInfo};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalatingRestart {
    restarts: u32,
    wait_ms: u64,
    notify: bool,
}

impl Policy for EscalatingRestart {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["restarts", "wait_ms", "notify"])?;
        let wait_ms: u64 = config.parse_or("wait_ms", 300_000)?;
        // The host refuses waits outside one second to a day (an answer that would flood events or park recovery).
        if !(1_000..=86_400_000).contains(&wait_ms) {
            return Err(format!("`wait_ms` must be from 1000 (a second) to 86400000 (a day), not {wait_ms}"));
        }
        Ok(EscalatingRestart {
            restarts: config.parse_or("restarts", 3)?,
            wait_ms,
            notify: config.parse_or("notify", true)?,
        })
    }
}

impl RecoveryStrategy for EscalatingRestart {
    fn decide(&self, service: &ServiceInfo, history: &[Failure], attempt: u32) -> Action {
        if attempt < self.restarts {
            return Action::Restart;
        }
        if self.notify && attempt == self.restarts {
            let last = history.last().map(|f| format!("; last failure: {}", f.detail)).unwrap_or_default();
            return Action::Notify(Some(format!(
                "{} is still failing after {} restart{}{last}",
                service.name,
                self.restarts,
                if self.restarts == 1 { "" } else { "s" }
            )));
        }
        Action::Wait(self.wait_ms)
    }
}

aegis_plugin_sdk::export_recovery_strategy!(EscalatingRestart);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<EscalatingRestart, String> {
        EscalatingRestart::init(&Config::from(
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>(),
        ))
    }

    fn svc() -> ServiceInfo {
        ServiceInfo { name: "api".into(), kind: "http".into(), endpoint: "http://127.0.0.1/health".into() }
    }

    #[test]
    fn restarts_then_notifies_once_then_waits() {
        let p = policy(&[("restarts", "2"), ("wait_ms", "1000")]).unwrap();
        let history = [Failure { at_ms: 1, detail: "HTTP 503".into() }];
        assert_eq!(p.decide(&svc(), &history, 0), Action::Restart);
        assert_eq!(p.decide(&svc(), &history, 1), Action::Restart);
        assert_eq!(
            p.decide(&svc(), &history, 2),
            Action::Notify(Some("api is still failing after 2 restarts; last failure: HTTP 503".into()))
        );
        assert_eq!(p.decide(&svc(), &history, 3), Action::Wait(1000));
        assert_eq!(p.decide(&svc(), &history, 40), Action::Wait(1000));
    }

    #[test]
    fn defaults_and_no_notify() {
        let p = policy(&[]).unwrap();
        assert_eq!(p.decide(&svc(), &[], 2), Action::Restart);
        assert!(
            matches!(p.decide(&svc(), &[], 3), Action::Notify(Some(m)) if m == "api is still failing after 3 restarts")
        );
        let quiet = policy(&[("restarts", "0"), ("notify", "false")]).unwrap();
        assert_eq!(quiet.decide(&svc(), &[], 0), Action::Wait(300_000));
    }

    #[test]
    fn bad_config_is_refused_with_the_key() {
        assert!(policy(&[("restarts", "-1")]).unwrap_err().contains("`restarts`"));
        assert!(policy(&[("wait_ms", "0")]).unwrap_err().contains("wait_ms"));
        assert!(policy(&[("wait_ms", "999")]).unwrap_err().contains("a second"), "below what the host accepts");
        assert!(policy(&[("wait_ms", "86400001")]).is_err(), "above a day");
        assert!(policy(&[("restart", "1")]).unwrap_err().contains("`restart`"));
    }
}
