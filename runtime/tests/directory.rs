//! The call placement directory and provider confirmation (issue 17
//! items 1 and 2, C11), end to end: a runtime serving the directory
//! (`[directory] serve`) takes providers' signed updates and answers
//! lookups; a runtime that is a provider (`[provider]`) records the
//! calls it places and answers signed confirmation queries about them,
//! rate-limited per asker. The test itself plays the other provider
//! ("q.example"): it signs its updates and queries with
//! `switchyard_directory`, and asks through `switchyard::directory::
//! Confirmer` as the inbound flow does. Everything is on 127.0.0.1, so
//! the runtimes' directory egress needs `[directory] private = true`.

#[path = "common/far.rs"]
mod far;
#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use far::{Answer as FarAnswer, FarEnd};
use http::{Auth, get, new_key, post, request_typed};
use serde_json::{Value, json};
use sip_common::{Config, Server, free_port, wait_until};
use switchyard::directory::{Confirmation, Confirmer, Own};
use switchyard::egress::{EgressPolicy, Setting};
use switchyard::serve::config::DirectorySection;
use switchyard_directory::{Answer, Identifier, ProviderUpdate, Query, Reply, SigningKey, jws};

const JOSE: &str = "application/jose";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A fresh P-256 key: its PKCS#8 PEM (what `[provider] key` names) and
/// the signing key.
fn new_key_pair() -> (String, SigningKey) {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let key = jws::signing_key_from_pem(&pem).unwrap();
    (pem, key)
}

/// `id`'s update listing `identifiers`, carrying `carried`'s public key,
/// signed by `signer`, issued at `iat`.
fn update(
    id: &str,
    identifiers: &[&str],
    carried: &SigningKey,
    signer: &SigningKey,
    iat: i64,
) -> String {
    ProviderUpdate {
        provider: id.into(),
        confirm_url: format!("https://{id}/v1/confirmations"),
        key: jws::public_key_pem(carried.verifying_key()),
        identifiers: identifiers.iter().map(|s| s.to_string()).collect(),
        iat,
    }
    .sign(signer)
}

fn put_provider(http: SocketAddr, id: &str, token: &str) -> http::Answer {
    let path = format!("/v1/directory/providers/{id}");
    request_typed(http, "PUT", &path, &Auth::none(), JOSE, token.as_bytes())
}

fn lookup(http: SocketAddr, id: &str) -> http::Answer {
    let id = id.replace('+', "%2B").replace('*', "%2A");
    get(
        http,
        &format!("/v1/directory/lookup?id={id}"),
        &Auth::none(),
    )
}

/// A runtime serving the directory on `http_port`, with itself as
/// `[directory] url`; with `provider` (key file, queries per minute) it
/// is provider a.example too, managing +1555* and a.example.
fn directory_runtime(config: Config, http_port: u16, provider: Option<(&Path, u32)>) -> Server {
    let base = format!("http://127.0.0.1:{http_port}");
    let mut table =
        format!("[directory]\nserve = true\nurl = \"{base}\"\nprivate = true\ntimeout_ms = 2000\n");
    if let Some((key, per_minute)) = provider {
        table.push_str(&format!(
            "\n[provider]\nid = \"a.example\"\nkey = \"{}\"\n\
             confirm_url = \"{base}/v1/confirmations\"\n\
             identifiers = [\"+1555*\", \"a.example\"]\nqueries_per_minute = {per_minute}\n",
            key.display()
        ));
    }
    Server::serve(&config.http(&format!("127.0.0.1:{http_port}")).table(&table))
}

#[test]
fn providers_publish_signed_entries_that_lookups_find_and_bad_updates_are_refused() {
    let port = free_port();
    let mut server = directory_runtime(Config::new(), port, None);
    let http = server.http;
    let (_, a) = new_key_pair();
    let (_, b) = new_key_pair();
    let (_, intruder) = new_key_pair();
    let now = unix_now();

    // A first registration, self-signed: 201; the same again: 200.
    let got = put_provider(
        http,
        "a.example",
        &update("a.example", &["+1555*", "a.example"], &a, &a, now),
    );
    assert_eq!(got.status, 201, "{}", got.text());
    assert_eq!(got.json()["identifiers"], json!(["+1555*", "a.example"]));
    let got = put_provider(
        http,
        "a.example",
        &update("a.example", &["+1555*", "a.example"], &a, &a, now),
    );
    assert_eq!(got.status, 200, "{}", got.text());
    let got = put_provider(
        http,
        "b.example",
        &update("b.example", &["+15551230001"], &b, &b, now),
    );
    assert_eq!(got.status, 201, "{}", got.text());

    // Lookups: the exact number beats the range; a subdomain finds its
    // domain; a number nobody manages is 404.
    let got = lookup(http, "+15551230001");
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        (
            got.json()["identifier"].clone(),
            got.json()["provider"].clone()
        ),
        (json!("+15551230001"), json!("b.example"))
    );
    let got = lookup(http, "+15559990001");
    assert_eq!(
        (
            got.json()["identifier"].clone(),
            got.json()["provider"].clone()
        ),
        (json!("+1555*"), json!("a.example"))
    );
    let key = got.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(jws::public_key_from_pem(&key).unwrap(), *a.verifying_key());
    assert_eq!(
        got.json()["confirm_url"],
        "https://a.example/v1/confirmations"
    );
    let got = lookup(http, "sip.a.example");
    assert_eq!(got.json()["provider"], "a.example", "{}", got.text());
    let got = lookup(http, "+16660000000");
    assert_eq!(
        (got.status, got.code()),
        (404, "not_found".into()),
        "{}",
        got.text()
    );
    assert_eq!(lookup(http, "not a number").status, 400);
    let got = get(http, "/v1/directory/providers/a.example", &Auth::none());
    assert_eq!(got.json()["id"], "a.example", "{}", got.text());
    assert_eq!(
        get(http, "/v1/directory/providers/zz.example", &Auth::none()).status,
        404
    );

    // An update of a.example signed by another key than the one on record.
    let got = put_provider(
        http,
        "a.example",
        &update("a.example", &["+1555*"], &intruder, &intruder, now),
    );
    assert_eq!(got.status, 401, "{}", got.text());
    assert!(
        got.text().contains("not signed by a.example's key"),
        "{}",
        got.text()
    );
    // Another provider claiming a.example's range: 409 naming the holder.
    let got = put_provider(
        http,
        "c.example",
        &update(
            "c.example",
            &["+1777*", "+1555*"],
            &intruder,
            &intruder,
            now,
        ),
    );
    assert_eq!(got.status, 409, "{}", got.text());
    assert_eq!(
        got.json()["message"],
        "+1555* is held by provider \"a.example\"",
        "{}",
        got.text()
    );
    assert_eq!(
        get(http, "/v1/directory/providers/c.example", &Auth::none()).status,
        404
    );
    // Stale (10 minutes old) and malformed updates: 400 saying why.
    let got = put_provider(
        http,
        "a.example",
        &update("a.example", &["+1555*"], &a, &a, now - 600),
    );
    assert_eq!(got.status, 400, "{}", got.text());
    assert!(got.text().contains("stale"), "{}", got.text());
    let got = put_provider(http, "a.example", "not a jws");
    assert_eq!(got.status, 400, "{}", got.text());
    let got = put_provider(
        http,
        "b.example",
        &update("a.example", &["+1555*"], &a, &a, now),
    );
    assert_eq!(got.status, 400, "{}", got.text());
    let message = got.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("signed as \"a.example\""), "{message}");
    // The key on record signs a key change; then the new key is on record.
    let (_, a2) = new_key_pair();
    let got = put_provider(
        http,
        "a.example",
        &update("a.example", &["+1555*"], &a2, &a, now),
    );
    assert_eq!(got.status, 200, "{}", got.text());
    let got = put_provider(
        http,
        "a.example",
        &update("a.example", &["+1555*"], &a2, &a2, now),
    );
    assert_eq!(got.status, 200, "{}", got.text());
    // The routes need no account credentials, and confirmations are not
    // served by a runtime that is no provider.
    let got = post(http, "/v1/confirmations", &Auth::none(), &json!({}));
    assert_eq!(got.status, 404, "{}", got.text());
    assert!(got.text().contains("not a provider"), "{}", got.text());
    server.assert_alive();
}

#[test]
fn a_runtime_that_serves_no_directory_says_so() {
    let mut server = Server::serve(&Config::new());
    let got = lookup(server.http, "+15551230001");
    assert_eq!(got.status, 404, "{}", got.text());
    assert!(got.text().contains("[directory] serve"), "{}", got.text());
    server.assert_alive();
}

/// A signed query of q.example about `orig` → `dest` at `at`.
fn query(q: &SigningKey, orig: &str, dest: &str, at: i64, nonce: &str) -> (Query, String) {
    let query = Query {
        asker: "q.example".into(),
        orig: orig.into(),
        dest: dest.into(),
        at,
        iat: unix_now(),
        nonce: nonce.into(),
    };
    let token = query.sign(q);
    (query, token)
}

fn ask(http: SocketAddr, token: &str) -> http::Answer {
    request_typed(
        http,
        "POST",
        "/v1/confirmations",
        &Auth::none(),
        JOSE,
        token.as_bytes(),
    )
}

/// A confirmer as the inbound flow builds it: asking the directory at
/// `url`, signing as `own` (if any).
fn confirmer(url: &str, private: bool, own: Option<(SigningKey, &str)>) -> Confirmer {
    let section = DirectorySection {
        serve: false,
        url: Some(url.into()),
        ttl_secs: 300,
        timeout_ms: 2_000,
        private,
    };
    let own = own.map(|(key, id)| {
        Arc::new(Own {
            id: id.into(),
            key,
            confirm_url: "https://q.example/v1/confirmations".into(),
            identifiers: vec![Identifier::parse("+1666*").unwrap()],
        })
    });
    let egress = match private {
        true => EgressPolicy::public_only().allowing_setting(Setting::DirectoryPrivate),
        false => EgressPolicy::public_only(),
    };
    Confirmer::new(&section, own, egress).unwrap().unwrap()
}

#[test]
fn the_provider_confirms_the_calls_it_placed_and_nothing_else() {
    let key_dir = tempfile::tempdir().unwrap();
    let (a_pem, a) = new_key_pair();
    let key_path = key_dir.path().join("a.pem");
    std::fs::write(&key_path, a_pem).unwrap();
    let far = FarEnd::start(FarAnswer::Refuse(486));
    let port = free_port();
    let config = http::acme(Config::new(), "100", "hold").trunk("carrier", far.sip.port());
    let mut server = directory_runtime(config, port, Some((&key_path, 6)));
    let http = server.http;
    // The runtime publishes itself to the directory (itself) at start.
    let published = wait_until(Duration::from_secs(10), || {
        get(http, "/v1/directory/providers/a.example", &Auth::none()).status == 200
    });
    assert!(
        published,
        "a.example never published itself\n{}",
        server.output()
    );
    // The asker, q.example, is in the directory too.
    let (_, q) = new_key_pair();
    let got = put_provider(
        http,
        "q.example",
        &update("q.example", &["+1666*"], &q, &q, unix_now()),
    );
    assert_eq!(got.status, 201, "{}", got.text());

    // A call placed over REST through the trunk, from one of a.example's
    // numbers (written without the +: normalised).
    let (_, acme) = new_key(http, "acme");
    let call = json!({"to": "+16669990001", "from": "sip:15551230001@127.0.0.1", "handler": "guest_hold", "timeout_secs": 5});
    let got = post(http, "/v1/calls", &acme, &call);
    assert_eq!(got.status, 201, "{}", got.text());
    far.wait("the INVITE", |log| log.invites >= 1);
    let at = unix_now();

    // Yes for that call; no for a call a.example did not place from one of
    // its numbers; unknown for a number that is not its own.
    let key = jws::public_key_from_pem(
        get(http, "/v1/directory/providers/a.example", &Auth::none()).json()["key"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(key, *a.verifying_key(), "the key of [provider] key");
    let cases = [
        ("+1 555 123 0001", "+16669990001", Answer::Yes),
        ("+15551230001", "+16669990002", Answer::No),
        ("+15559999999", "+16669990001", Answer::No),
        ("+17771230001", "+16669990001", Answer::Unknown),
    ];
    for (n, (orig, dest, expected)) in cases.into_iter().enumerate() {
        let (query, token) = query(&q, orig, dest, at, &format!("nonce-{n:04}"));
        let got = ask(http, &token);
        assert_eq!(got.status, 200, "{orig}: {}", got.text());
        assert!(
            got.head.contains("content-type: application/jose"),
            "{}",
            got.head
        );
        let reply = Reply::verify(&got.text(), "a.example", &key, &query, unix_now());
        assert_eq!(reply, Ok(expected), "{orig} → {dest}");
        // Nothing but the answer: no call id, no time.
        let claims: Value = jws::claims_unverified(&got.text()).unwrap();
        let mut fields: Vec<&str> = claims
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            ["answer", "dest", "iat", "nonce", "orig", "provider"]
        );
    }

    // Refused queries: signed by another key than q.example's on record
    // (401), from an asker the directory does not know (401), stale (400).
    let (_, other) = new_key_pair();
    let (_, forged) = query(&other, "+15551230001", "+16669990001", at, "nonce-forged");
    assert_eq!(ask(http, &forged).status, 401);
    let unknown = Query {
        asker: "nobody.example".into(),
        ..query(&q, "+15551230001", "+16669990001", at, "nonce-nobody").0
    };
    let got = ask(http, &unknown.sign(&q));
    assert_eq!(got.status, 401, "{}", got.text());
    assert!(
        got.text().contains("not in the directory"),
        "{}",
        got.text()
    );
    let stale = Query {
        iat: unix_now() - 600,
        ..query(&q, "+15551230001", "+16669990001", at, "nonce-stale").0
    };
    let got = ask(http, &stale.sign(&q));
    assert_eq!(got.status, 400, "{}", got.text());
    assert!(got.text().contains("stale"), "{}", got.text());

    // The inbound flow's view, through Confirmer (q.example asking).
    let url = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let checks = runtime.block_on(async {
        let asker = confirmer(&url, true, Some((q.clone(), "q.example")));
        let confirmed = asker
            .check(
                "sip:+15551230001@carrier.example;user=phone",
                "+16669990001",
                at,
            )
            .await;
        let denied = asker.check("+15551234567", "+16669990001", at).await;
        let unknown = asker.check("+18881230001", "+16669990001", at).await;
        let anonymous = asker.check("anonymous", "+16669990001", at).await;
        let unsigned = confirmer(&url, true, None)
            .check("+15551230001", "+16669990001", at)
            .await;
        [confirmed, denied, unknown, anonymous, unsigned]
    });
    let answers: Vec<Confirmation> = checks.iter().map(|c| c.answer).collect();
    assert_eq!(
        answers,
        [
            Confirmation::Confirmed,
            Confirmation::Denied,
            Confirmation::UnknownCaller,
            Confirmation::UnknownCaller,
            Confirmation::NotAsked,
        ],
        "{checks:#?}"
    );
    assert_eq!(checks[0].provider.as_deref(), Some("a.example"));
    assert!(
        checks[1].reason.contains("placed no such call"),
        "{}",
        checks[1].reason
    );
    assert!(
        checks[2].reason.contains("no provider for +18881230001"),
        "{}",
        checks[2].reason
    );
    assert!(
        checks[4].reason.contains("[provider]"),
        "{}",
        checks[4].reason
    );

    // The rate limit, per asker: 6 a minute, 6 at once. A fresh asker
    // gets its burst (one more, should a token have come back meanwhile),
    // then 429 with Retry-After.
    let (_, r) = new_key_pair();
    let got = put_provider(
        http,
        "r.example",
        &update("r.example", &["+1888*"], &r, &r, unix_now()),
    );
    assert_eq!(got.status, 201, "{}", got.text());
    let mut answered = 0;
    let limited = loop {
        let mut asked = query(
            &r,
            "+15551230001",
            "+16669990001",
            at,
            &format!("nonce-rate-{answered}"),
        )
        .0;
        asked.asker = "r.example".into();
        let got = ask(http, &asked.sign(&r));
        if got.status != 200 || answered > 7 {
            break got;
        }
        answered += 1;
    };
    assert!(
        (6..=7).contains(&answered),
        "{answered} answered before the limit"
    );
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert_eq!(limited.code(), "too_many_requests");
    assert!(limited.head.contains("retry-after: "), "{}", limited.head);
    server.assert_alive();
}

#[test]
fn a_loopback_directory_is_refused_unless_the_directory_may_be_private() {
    // Nothing need listen: the egress policy refuses before connecting.
    let url = format!("http://127.0.0.1:{}", free_port());
    let (_, q) = new_key_pair();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (check, published) = runtime.block_on(async {
        let strict = confirmer(&url, false, Some((q, "q.example")));
        let check = strict
            .check("+15551230001", "+16669990001", unix_now())
            .await;
        (check, strict.publish().await)
    });
    assert_eq!(check.answer, Confirmation::Unreachable, "{check:?}");
    for why in [&check.reason, &published.unwrap_err().1] {
        assert!(why.contains("`[directory] private = true`"), "{why}");
        assert!(why.contains("127.0.0.1 is not a public address"), "{why}");
    }
    let localhost = url.replace("127.0.0.1", "localhost");
    let check = runtime.block_on(async {
        let (_, q) = new_key_pair();
        confirmer(&localhost, false, Some((q, "q.example")))
            .check("+15551230001", "+16669990001", unix_now())
            .await
    });
    assert!(
        check.reason.contains("[directory] private"),
        "{}",
        check.reason
    );
}
