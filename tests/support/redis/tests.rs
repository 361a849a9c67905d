use super::*;

#[test]
fn starts_answers_and_counts_commands() {
    let redis = RedisServer::start();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_eq!(redis.url_with_password(), redis.url());
    assert_eq!(redis.command(&["SET", "aegis:k", "v"]), "OK");
    assert_eq!(redis.command(&["GET", "aegis:k"]), "v");
    assert_eq!(redis.command(&["GET", "missing"]), "");
    assert_eq!(redis.try_command(&["NOSUCHCOMMAND"]).map(|r| matches!(r, Reply::Error(_))), Ok(true));
    let calls = redis.command_calls();
    assert_eq!((calls.get("set"), calls.get("get")), (Some(&1), Some(&2)), "{calls:?}");
    assert!(redis.log().is_file(), "logs into its own directory");
}

#[test]
fn a_password_is_required() {
    let redis = RedisServer::start_with(RedisOptions::default().password("s3cret/pw"));
    assert_eq!(redis.command(&["PING"]), "PONG");
    assert_eq!(redis.url_with_password(), format!("redis://:s3cret%2Fpw@127.0.0.1:{}", redis.port()));
    let anonymous = resp::Target { addr: redis.addr(), ca_file: None, password: None };
    let refused = resp::command(anonymous, &["GET", "k"]);
    assert!(matches!(&refused, Ok(Reply::Error(e)) if e.starts_with("NOAUTH")), "{refused:?}");
    let wrong = resp::Target { password: Some("wrong"), ..anonymous };
    let refused = resp::command(wrong, &["PING"]);
    assert!(matches!(&refused, Err(e) if e.contains("refused")), "{refused:?}");
}

#[test]
fn tls_is_verified_with_its_ca_and_not_with_another() {
    let redis = RedisServer::start_with(RedisOptions::default().tls().password("pw"));
    let tls = redis.tls().expect("TLS files");
    assert_eq!(redis.url(), format!("rediss://127.0.0.1:{}", redis.port()));
    assert_eq!(redis.command(&["PING"]), "PONG");

    let wrong_ca = resp::Target { addr: redis.addr(), ca_file: Some(&tls.wrong_ca), password: Some("pw") };
    let failed = resp::command(wrong_ca, &["PING"]);
    assert!(matches!(&failed, Err(e) if e.contains("UnknownIssuer")), "{failed:?}");
    let plain = resp::Target { ca_file: None, ..wrong_ca };
    assert!(resp::command(plain, &["PING"]).is_err(), "plain text is not served on the TLS port");

    // The same CA file through redis-cli, an OpenSSL client (redis-tools, a dependency of redis-server).
    let cli = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", tls.ca.to_str().expect("utf-8"), "-p", &redis.port().to_string()])
        .args(["--no-auth-warning", "-a", "pw", "PING"])
        .output()
        .expect("run redis-cli");
    assert_eq!(String::from_utf8_lossy(&cli.stdout).trim(), "PONG", "{cli:?}");
}

#[test]
fn stop_keeps_the_data_kill_loses_it_and_both_restart_on_the_same_port() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    redis.command(&["SET", "kept", "1"]);
    redis.stop();
    assert!(!redis.is_running());
    assert!(redis.try_command(&["PING"]).is_err(), "stopped means unreachable");
    redis.start_again();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["GET", "kept"]), "1", "SIGTERM saved the data set");

    redis.command(&["SET", "lost", "1"]);
    redis.kill();
    assert!(redis.try_command(&["PING"]).is_err(), "killed means unreachable");
    redis.start_again();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["GET", "lost"]), "", "SIGKILL lost what was not saved");
    assert_eq!(redis.command(&["GET", "kept"]), "1", "the last save is still there");
}

#[test]
fn parses_command_stats() {
    let info = "# Commandstats\r\ncmdstat_set:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n\
                cmdstat_xadd:calls=12,usec=1\r\n";
    let calls = parse_command_calls(info);
    assert_eq!(calls, BTreeMap::from([("set".to_owned(), 3), ("xadd".to_owned(), 12)]));
}
