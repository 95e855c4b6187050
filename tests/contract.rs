//! Every request the daemon makes is valid against EGYM's published OpenAPI document (a copy in
//! `tests/data/mms-api-v2.openapi.json`): its path, method, parameters, body and API key. The
//! daemon, `calibrate` and `enrol` (through the running service and on its own) make each call
//! they know against the stand-in EGYM, and each request the stand-in received is checked
//! against the document itself, so a new call cannot drift from it.

mod common;

use common::*;
use serde_json::Value;

fn spec() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/mms-api-v2.openapi.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Follows a `$ref` within the document.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            resolve(spec, spec.pointer(pointer).expect("the $ref exists"))
        }
        None => schema,
    }
}

/// Checks `value` against `schema` (the parts of JSON Schema the document uses for what the
/// daemon sends); every problem found, each with where it is.
fn check_value(spec: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(spec, schema);
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    let kind = schema.get("type").and_then(Value::as_str);
    match (kind, value) {
        (Some("object") | None, Value::Object(fields)) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = required.as_str().unwrap();
                if !fields.contains_key(name) {
                    problems.push(format!("{at}: required field {name:?} missing"));
                }
            }
            for (name, field) in fields {
                match properties.and_then(|p| p.get(name)) {
                    Some(field_schema) => {
                        check_value(spec, field_schema, field, &format!("{at}.{name}"), problems);
                    }
                    None => problems.push(format!("{at}: field {name:?} is not in the schema")),
                }
            }
        }
        (Some("integer"), Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        (Some("number"), Value::Number(_)) | (Some("boolean"), Value::Bool(_)) => {}
        (Some("string"), Value::String(text)) => check_string(schema, text, at, problems),
        (Some("array"), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_value(
                    spec,
                    &schema["items"],
                    item,
                    &format!("{at}[{i}]"),
                    problems,
                );
            }
        }
        (kind, value) => problems.push(format!("{at}: {value} is not of type {kind:?}")),
    }
}

fn check_string(schema: &Value, text: &str, at: &str, problems: &mut Vec<String>) {
    let length = text.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        problems.push(format!("{at}: {text:?} is shorter than {min}"));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        problems.push(format!("{at}: {text:?} is longer than {max}"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        let matches = PATTERNS
            .iter()
            .find(|(known, _)| *known == pattern)
            .map(|(_, matches)| matches)
            .unwrap_or_else(|| {
                panic!("{at}: this check does not know the pattern {pattern}; teach it")
            });
        if !matches(text) {
            problems.push(format!(
                "{at}: {text:?} does not match the pattern {pattern}"
            ));
        }
    }
}

/// A pattern of the document, and a function that says whether a text matches it.
type Pattern = (&'static str, fn(&str) -> bool);

/// The patterns the document's schemas use for what the daemon sends, each with what it means
/// (no regular-expression engine needed for these).
const PATTERNS: &[Pattern] = &[(
    // `RfidDTO.rfid`: 0x and whole bytes of hex.
    "^0x([0-9a-fA-F]{2})+$",
    |text| {
        text.strip_prefix("0x").is_some_and(|hex| {
            !hex.is_empty() && hex.len() % 2 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit())
        })
    },
)];

/// A path segment as sent, `%XX` escapes decoded.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() + 1 {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Everything wrong with one request against the document; empty when it is valid.
fn check_request(spec: &Value, request: &Received) -> Vec<String> {
    check_operation(spec, request).1
}

/// The operation a request is for (`POST /api/v2/accounts/{accountId}/checkins`), if the
/// document has it, and everything wrong with the request.
fn check_operation(spec: &Value, request: &Received) -> (Option<String>, Vec<String>) {
    let mut operation_name = None;
    let problems = check_against(spec, request, &mut operation_name);
    (operation_name, problems)
}

fn check_against(spec: &Value, request: &Received, name: &mut Option<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let at = format!("{} {}", request.method, request.path);
    let segments: Vec<&str> = request.path.split('/').collect();
    // The template that matches with the most literal segments.
    let matched = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(template, item)| {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            let mut params = Vec::new();
            for (part, segment) in parts.iter().zip(&segments) {
                if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    params.push((name.to_string(), decode(segment)));
                } else if part == segment {
                    literal += 1;
                } else {
                    return None;
                }
            }
            Some((literal, template.clone(), item, params))
        })
        .max_by_key(|(literal, ..)| *literal);
    let Some((_, template, item, path_params)) = matched else {
        return vec![format!("{at}: no such path in the document")];
    };
    let Some(operation) = item.get(request.method.to_lowercase()) else {
        return vec![format!("{at}: {template} has no {}", request.method)];
    };
    *name = Some(format!("{} {template}", request.method));
    let parameters: Vec<&Value> = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| resolve(spec, p))
        .collect();
    let declared = |name: &str, place: &str| {
        parameters
            .iter()
            .find(|p| p["name"] == name && p["in"] == place)
            .copied()
    };
    for (name, value) in &path_params {
        match declared(name, "path") {
            Some(parameter) => {
                check_string(
                    &parameter["schema"],
                    value,
                    &format!("{at}: {name}"),
                    &mut problems,
                );
            }
            None => problems.push(format!("{at}: path parameter {name} is not declared")),
        }
    }
    let query: Vec<(String, String)> = request
        .query
        .as_deref()
        .map(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect()
        })
        .unwrap_or_default();
    for (name, value) in &query {
        let Some(parameter) = declared(name, "query") else {
            problems.push(format!("{at}: query parameter {name} is not declared"));
            continue;
        };
        let schema = resolve(spec, &parameter["schema"]);
        let value = match schema["type"].as_str() {
            Some("boolean") => match value.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                other => Value::String(other.into()),
            },
            _ => Value::String(value.clone()),
        };
        check_value(
            spec,
            schema,
            &value,
            &format!("{at}: ?{name}"),
            &mut problems,
        );
    }
    for parameter in &parameters {
        if parameter["in"] == "query"
            && parameter["required"] == true
            && !query
                .iter()
                .any(|(name, _)| parameter["name"] == name.as_str())
        {
            problems.push(format!(
                "{at}: required query parameter {} missing",
                parameter["name"]
            ));
        }
    }
    match operation.get("requestBody") {
        Some(body) => {
            let schema = &body["content"]["application/json"]["schema"];
            match &request.body {
                Some(value) => {
                    check_value(spec, schema, value, &format!("{at}: body"), &mut problems);
                }
                None if body["required"] == true => {
                    problems.push(format!("{at}: the body is required"));
                }
                None => {}
            }
            if request.body.is_some()
                && !request
                    .content_type
                    .as_deref()
                    .is_some_and(|t| t.starts_with("application/json"))
            {
                problems.push(format!(
                    "{at}: a JSON body without Content-Type: application/json"
                ));
            }
        }
        None if request.body_len > 0 => {
            problems.push(format!(
                "{at}: sends a body, which the operation does not take"
            ));
        }
        None => {}
    }
    // Every operation is under the document's API-key security.
    let header = spec["components"]["securitySchemes"]["mms"]["name"]
        .as_str()
        .unwrap();
    assert_eq!(header, "x-api-key");
    if request.api_key.is_none() {
        problems.push(format!("{at}: no {header} header"));
    }
    problems
}

/// A request as the stand-in would record it, for checking the check itself.
fn request(method: &str, path: &str, query: Option<&str>, body: Option<Value>) -> Received {
    Received {
        method: method.into(),
        path: path.into(),
        query: query.map(str::to_string),
        api_key: Some("key".into()),
        user_agent: None,
        content_type: body.as_ref().map(|_| "application/json".to_string()),
        body_len: body.as_ref().map_or(0, |b| b.to_string().len()),
        body,
        at_ms: 0,
        at: gym_checkin::clock::timer::Instant::now(),
        status: None,
    }
}

#[test]
fn the_check_itself_finds_what_the_document_does_not_allow() {
    let spec = spec();
    let valid = [
        request(
            "GET",
            "/api/v2/accounts/rfid/0x0C000621A5",
            Some("tagFormat=MIFARE"),
            None,
        ),
        request(
            "POST",
            "/api/v2/accounts/a1/checkins",
            None,
            Some(serde_json::json!({"timestamp": 1_796_083_200_000_i64})),
        ),
        request("POST", "/api/v2/accounts/a1/admissions", None, None),
        request(
            "GET",
            "/api/v2/accounts/a1/rfids",
            Some("allSources=true"),
            None,
        ),
        request(
            "GET",
            "/api/v2/accounts/email/pat%40example.invalid",
            None,
            None,
        ),
        request(
            "POST",
            "/api/v2/accounts/a1/rfids",
            None,
            Some(serde_json::json!({"rfid": "0x0A0B0C0D0E", "tagFormat": "MIFARE"})),
        ),
        request(
            "POST",
            "/api/v2/accounts/a1/rfids",
            None,
            Some(serde_json::json!({"rfid": "0x0A0B0C0D0E"})),
        ),
    ];
    for r in &valid {
        assert_eq!(check_request(&spec, r), Vec::<String>::new(), "{r:?}");
    }
    let invalid = [
        (
            request(
                "GET",
                "/api/v2/accounts/rfid/0x0C",
                Some("tagFormat=EM4100"),
                None,
            ),
            "is not one of",
        ),
        (
            request(
                "GET",
                "/api/v2/accounts/rfid/0x0C",
                Some("format=MIFARE"),
                None,
            ),
            "not declared",
        ),
        (
            request("DELETE", "/api/v2/accounts/a1/checkins", None, None),
            "has no DELETE",
        ),
        (
            request(
                "POST",
                "/api/v2/accounts/a1/checkins",
                None,
                Some(serde_json::json!({"timestamp": "soon"})),
            ),
            "is not of type",
        ),
        (
            request(
                "POST",
                "/api/v2/accounts/a1/checkins",
                None,
                Some(serde_json::json!({"time": 1})),
            ),
            "not in the schema",
        ),
        (
            request("POST", "/api/v2/accounts/a1/checkins", None, None),
            "body is required",
        ),
        (
            request(
                "POST",
                "/api/v2/accounts/a1/admissions",
                None,
                Some(serde_json::json!({})),
            ),
            "does not take",
        ),
        (
            request("GET", "/api/v2/accounts/email/a%40b", None, None),
            "shorter than 5",
        ),
        (
            request("GET", "/api/v2/members/a1", None, None),
            "no such path",
        ),
        (
            request(
                "GET",
                "/api/v2/accounts/a1/rfids",
                Some("allSources=yes"),
                None,
            ),
            "is not of type",
        ),
        (
            request(
                "POST",
                "/api/v2/accounts/a1/rfids",
                None,
                Some(serde_json::json!({"rfid": "0A0B0C0D0E"})),
            ),
            "pattern",
        ),
        (
            request(
                "POST",
                "/api/v2/accounts/a1/rfids",
                None,
                Some(serde_json::json!({"rfid": "0x0A", "tagFormat": "EM4100"})),
            ),
            "is not one of",
        ),
        (
            request("POST", "/api/v2/accounts/a1/rfids", None, None),
            "body is required",
        ),
    ];
    for (r, says) in &invalid {
        let problems = check_request(&spec, r);
        assert!(
            problems.iter().any(|p| p.contains(says)),
            "{r:?}: {problems:?} lacks {says:?}"
        );
    }
    let mut keyless = valid[0].clone();
    keyless.api_key = None;
    assert!(check_request(&spec, &keyless)[0].contains("x-api-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_the_daemon_calibrate_and_enrol_make_is_valid_against_egyms_document() {
    let dir = TestDir::new("contract");
    let fake = start_egym(vec![
        Member::new("0x0C000621A5", "acc-em", "Em Member"),
        Member::new("0x1EA68671", "acc-mifare", "Mi Member")
            .enrolled_as("MIFARE")
            .email("mi@example.invalid"),
        Member::new("0x0D00A1B2C3", "acc-wellpass", "Wp Member").wellpass(None),
        Member::without_card("acc-new", "New Member").email("new@example.invalid"),
        Member::without_card("acc-new2", "Newer Member"),
    ])
    .await;
    let mut em = Pty::open();
    let mut line = Pty::open();
    let readers = serial_reader("entrance", &em.slave_path, "em4100", "debounce = \"100ms\"")
        + &serial_reader(
            "desk",
            &line.slave_path,
            "line",
            "id-format = \"decimal\"\nbyte-order = \"reversed\"\negym-tag-format = \"MIFARE\"",
        );
    let config = write_config(&dir, &fake.base_url(), "repeat-window = \"1s\"", &readers);
    let daemon = Daemon::start(&config);
    daemon.wait_for_events("reader_connected", 2, LONG).await;
    // A lookup without and with tagFormat, an admission, check-ins and a check-out.
    em.write(&em4100_frame("0C000621A5"));
    line.write(b"1904649758\r\n");
    em.write(&em4100_frame("0D00A1B2C3"));
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 3).await.0);
    // Again once the repeat window is over: a check-out.
    daemon.wait_for_events("tap_recorded", 3, LONG).await;
    let checked_in = daemon
        .recorded()
        .into_iter()
        .find(|r| r.tag.ends_with("21A5"));
    wait_until_past(checked_in.unwrap().tapped_at_ms + 1_000).await;
    em.write(&em4100_frame("0C000621A5"));
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 4).await.0);
    // enrol through the running service: a card for a member found by e-mail, on the reader
    // that sends MIFARE.
    let enrolled = enrol(
        &config,
        &[
            "--reader",
            "desk",
            "--member",
            "new@example.invalid",
            "--tag",
            "0x0A0B0C0D0E",
        ],
    );
    assert!(enrolled.status.success(), "{enrolled:?}");
    drop(daemon);
    // enrol on its own: a member found by membership id, on the reader that sends no tagFormat.
    let enrolled = enrol(
        &config,
        &[
            "--reader",
            "entrance",
            "--member",
            "m-acc-new2",
            "--tag",
            "0x0B0B0C0D0E",
        ],
    );
    assert!(enrolled.status.success(), "{enrolled:?}");

    // calibrate: the member by e-mail and by membership id, and the enrolled cards.
    for member in ["mi@example.invalid", "m-acc-mifare"] {
        let before = fake.received().len();
        let output = gym_checkin()
            .args([
                "calibrate",
                "--reader",
                "entrance",
                "--member",
                member,
                "--config",
            ])
            .arg(&config)
            .env_remove("EGYM_API_KEY")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Its requests are made before it waits for a card: stop it once they are in.
        let (asked, received) = fake.wait_for(LONG, |r| r.len() >= before + 2).await;
        assert!(asked, "calibrate asked nothing: {received:#?}");
        let mut output = output;
        let _ = output.kill();
        let _ = output.wait();
    }

    let spec = spec();
    let received = fake.received();
    let mut operations: Vec<String> = Vec::new();
    for r in &received {
        let (operation, problems) = check_operation(&spec, r);
        assert!(problems.is_empty(), "{problems:#?}");
        let operation = operation.unwrap();
        if !operations.contains(&operation) {
            operations.push(operation);
        }
    }
    println!(
        "{} requests checked against the document, for {} operations: {operations:#?}",
        received.len(),
        operations.len()
    );
    for operation in [
        "GET /api/v2/accounts/rfid/{rfid}",
        "GET /api/v2/accounts/email/{email}",
        "GET /api/v2/accounts/membership/{membershipId}",
        "GET /api/v2/accounts/{accountId}/rfids",
        "POST /api/v2/accounts/{accountId}/rfids",
        "POST /api/v2/accounts/{accountId}/admissions",
        "POST /api/v2/accounts/{accountId}/checkins",
        "POST /api/v2/accounts/{accountId}/checkouts",
    ] {
        assert!(
            operations.iter().any(|o| o == operation),
            "no request for {operation} was checked: {operations:#?}"
        );
    }
    // Both cards added, each with the reader's own tagFormat (or none).
    let added: Vec<&Value> = received
        .iter()
        .filter(|r| r.add_rfid().is_some())
        .filter_map(|r| r.body.as_ref())
        .collect();
    assert_eq!(
        added,
        [
            &serde_json::json!({"rfid": "0x0A0B0C0D0E", "tagFormat": "MIFARE"}),
            &serde_json::json!({"rfid": "0x0B0B0C0D0E"}),
        ]
    );
    for call in [
        "/accounts/rfid/",
        "tagFormat=MIFARE",
        "/admissions",
        "/checkins",
        "/checkouts",
        "/accounts/email/",
        "/accounts/membership/",
        "/rfids",
    ] {
        assert!(
            received
                .iter()
                .any(|r| format!("{}?{}", r.path, r.query.as_deref().unwrap_or("")).contains(call)),
            "no request with {call:?} was checked"
        );
    }
}

/// Runs `gym-checkin enrol` with `args` and `--yes` to its end.
fn enrol(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    gym_checkin()
        .arg("enrol")
        .args(args)
        .arg("--yes")
        .arg("--config")
        .arg(config)
        .env_remove("EGYM_API_KEY")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}
