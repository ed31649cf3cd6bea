//! The OpenAPI 3.1 document at `/openapi.json`, built with utoipa from the
//! route table in `api::ops::openapi_routes` so every route is described.
//!
//! Owns: the document. Must not: drift from the router or from the handlers'
//! JSON shapes; schemathesis (`tests/schemathesis.rs`) sends generated
//! requests to every operation and fails on a 5xx or an answer the document
//! does not allow. Caveat: path parameters, request bodies and the main
//! success bodies (sessions, holds, checkout, ticket verification, health)
//! have schemas ([`shapes`]); the other success bodies are described in prose.

use std::sync::OnceLock;

use serde_json::json;
use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, OpenApiBuilder, Paths, Ref,
    Required, ResponseBuilder,
};
use utoipa::ToSchema;

/// An RFC 9457 problem as every error of this API is shaped.
#[allow(dead_code)]
#[derive(ToSchema)]
struct Problem {
    /// URI naming the problem kind.
    #[schema(rename = "type")]
    type_uri: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable snake_case code, e.g. `seat_unavailable`, `not_admitted`, `rate_limited`.
    code: String,
    /// With `seat_unavailable`: the seats that were taken.
    seats: Option<Vec<String>>,
    /// With 429 and 503: also in the `Retry-After` header.
    retry_after_s: Option<u64>,
}

/// Errors each kind of route can answer, besides the shared 413/429/503.
fn errors_for(method: &str, auth: &str) -> Vec<(u16, &'static str)> {
    let mut errors = vec![
        (400, "malformed request"),
        (404, "unknown resource (or not yours)"),
        (405, "method not allowed"),
    ];
    if method != "get" {
        errors.extend([
            (413, "body too large"),
            (415, "wrong content type"),
            (422, "invalid values"),
        ]);
        errors.extend([
            (409, "conflict: seat unavailable, already checked in, ..."),
            (410, "hold expired"),
        ]);
        errors.push((402, "payment failed (seats released)"));
    }
    if auth != "none" && auth != "signature" {
        errors.push((401, "missing or invalid token"));
        errors.push((
            403,
            "forbidden: admin only, not admitted, or another user's token",
        ));
    }
    errors.extend([
        (429, "rate limited (Retry-After)"),
        (503, "no leader or cluster unavailable (Retry-After)"),
    ]);
    errors.sort();
    errors.dedup_by_key(|e| e.0);
    errors
}

fn build() -> utoipa::openapi::OpenApi {
    let mut paths = Paths::new();
    for (method, path, summary, auth, successes) in crate::api::openapi_routes() {
        let mut op = OperationBuilder::new()
            .summary(Some(*summary))
            .operation_id(Some(format!(
                "{method}_{}",
                path.trim_matches('/')
                    .replace(['/', '{', '}', '.', '-'], "_")
            )));
        for part in path.split('/') {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True),
                );
            }
        }
        for status in *successes {
            op = op.response(
                status.to_string(),
                ResponseBuilder::new().description("success").build(),
            );
        }
        for (status, what) in errors_for(method, auth) {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            op = op.response(
                status.to_string(),
                ResponseBuilder::new()
                    .description(what)
                    .content("application/problem+json", content)
                    .build(),
            );
        }
        // Alternatives (any one will do), by what the route needs.
        let none: Vec<String> = Vec::new();
        let schemes: &[&str] = match *auth {
            "user" => &["userJwt", "demoSession"],
            "admin" => &["adminToken", "userJwt"],
            "scan" => &["userJwt", "adminToken"],
            "signature" => &["webhookSignature"],
            _ => &[],
        };
        for scheme in schemes {
            op = op.security(SecurityRequirement::new(*scheme, none.clone()));
        }
        let http = match *method {
            "get" => HttpMethod::Get,
            "post" => HttpMethod::Post,
            _ => HttpMethod::Delete,
        };
        paths.add_path_operation(*path, vec![http], op.build());
    }
    let components = ComponentsBuilder::new()
        .schema_from::<Problem>()
        .security_scheme(
            "userJwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "[auth] mode = \"jwt\": a JWT (EdDSA, ES256 or RS256) from the operator's \
                         identity provider, with the configured iss and aud. The user is `sub`; \
                         the `scope` claim may grant `booking:admin` (operator routes) and \
                         `booking:scan` (check-in).",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "demoSession",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "[auth] mode = \"demo\" (loopback only): the token POST /v1/sessions returns.",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "adminToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operators' token ([gateway] admin_token or admin_token_file).",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "webhookSignature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Booking-Signature",
                "t=<unix seconds>,v1=<hex HMAC-SHA256(webhook secret, \"<t>.<body>\")>",
            ))),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("booking gateway")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The public HTTP API of the Raft-replicated seat-booking store. Every error is \
                     application/problem+json with a stable `code`.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The document as JSON, built once: the utoipa skeleton with the JSON
/// Schemas of [`shapes`] patched in.
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(build()).unwrap_or_else(|_| json!({}));
        shapes::patch(&mut doc);
        doc.to_string()
    })
    .clone()
}

/// JSON Schemas of parameters and bodies, kept beside the handlers' types
/// by hand (the handlers build their answers with `json!`).
mod shapes {
    use serde_json::{json, Value};

    /// A path parameter's schema and an example that exists in a demo.
    fn path_param(name: &str) -> Value {
        match name {
            "event_id" => json!({
                "schema": {"type": "string", "minLength": 1, "maxLength": 64,
                           "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"},
                "example": "gig"
            }),
            "token" => json!({"schema": {"type": "string", "minLength": 1}, "example": "x"}),
            // hold_id, booking_id, ticket_id: counters from 1.
            _ => json!({
                "schema": {"type": "integer", "format": "int64", "minimum": 0},
                "example": 1
            }),
        }
    }

    /// Query and header parameters besides the path ones.
    fn extra_params(method: &str, path: &str) -> Vec<Value> {
        match (method, path) {
            ("get", "/v1/events/{event_id}/availability") => vec![json!({
                "name": "consistency", "in": "query", "required": false,
                "description": "`linearizable` (default) or `stale` (any node, may lag)",
                "schema": {"type": "string", "enum": ["linearizable", "stale"]}
            })],
            ("get", "/v1/events/{event_id}/live") => vec![json!({
                "name": "from", "in": "query", "required": false,
                "description": "resume from this log index (last seen + 1)",
                "schema": {"type": "integer", "format": "int64", "minimum": 0}
            })],
            ("post", "/v1/events/{event_id}/holds") => vec![json!({
                "name": "Idempotency-Key", "in": "header", "required": false,
                "description": "same key, same user: the same hold",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                           "pattern": "^[!-~]+$"}
            })],
            ("post", "/v1/payments/webhook") => vec![json!({
                "name": "Booking-Signature", "in": "header", "required": true,
                "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`",
                "schema": {"type": "string"}
            })],
            _ => vec![],
        }
    }

    fn object(required: &[&str], properties: Value) -> Value {
        json!({"type": "object", "required": required, "properties": properties,
               "additionalProperties": false})
    }

    fn seat_list() -> Value {
        json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 100})
    }

    fn general_admission() -> Value {
        object(
            &["section", "count"],
            json!({"section": {"type": "string"},
                   "count": {"type": "integer", "format": "int32", "minimum": 1}}),
        )
    }

    /// The JSON request body an operation takes, if any.
    fn request_body(method: &str, path: &str) -> Option<Value> {
        let schema = match (method, path) {
            ("post", "/v1/sessions") => object(
                &["name"],
                json!({"name": {"type": "string", "minLength": 1, "maxLength": 64,
                                "pattern": "^[A-Za-z0-9_.-]+$", "example": "alice"}}),
            ),
            ("post", "/v1/events") => json!({
                "type": "object",
                "description": "EventSpec: reserved sections with rows, or general-admission sections",
                "required": ["name", "venue", "starts_at", "sections"],
                "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"},
                    "venue": {"type": "string"},
                    "starts_at": {"type": "string", "format": "date-time"},
                    "sale_opens_at": {"type": "string", "format": "date-time"},
                    "hold_ttl_ms": {"type": "integer", "format": "int64", "minimum": 0},
                    "max_seats_per_hold": {"type": "integer", "format": "int32", "minimum": 0},
                    "waiting_room": {"type": "object"},
                    "sections": {"type": "array", "items": {"type": "object"}}
                }
            }),
            ("post", "/v1/events/{event_id}/holds") => json!({
                "type": "object",
                "description": "exactly one of `seats`, `best_available`, `general_admission`; \
                                on a waiting-room event also the `queue_token` from joining",
                "minProperties": 1, "maxProperties": 2, "additionalProperties": false,
                "properties": {
                    "queue_token": {"type": "string", "minLength": 1},
                    "seats": seat_list(),
                    "best_available": {
                        "type": "object", "required": ["count"], "additionalProperties": false,
                        "properties": {
                            "count": {"type": "integer", "format": "int32", "minimum": 1},
                            "section": {"type": "string"},
                            "allow_non_adjacent": {"type": "boolean"}
                        }
                    },
                    "general_admission": general_admission()
                }
            }),
            ("post", "/v1/holds/{hold_id}/checkout") => object(
                &["payment_method"],
                json!({"payment_method": {
                    "type": "string", "maxLength": 64,
                    "description": "simulated provider: tok_ok, tok_declined, tok_flaky, \
                                    tok_pending, tok_slow_<ms>",
                    "examples": ["tok_ok", "tok_declined", "tok_flaky", "tok_pending"]}}),
            ),
            ("post", "/v1/tickets/verify") | ("post", "/v1/events/{event_id}/check-in") => {
                object(&["code"], json!({"code": {"type": "string"}}))
            }
            ("post", "/v1/payments/webhook") => json!({
                "type": "object", "required": ["id", "type", "data"],
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string", "enum": ["payment.succeeded", "payment.failed"]},
                    "data": {"type": "object", "required": ["hold_id", "charge_id", "amount_cents"],
                             "properties": {"hold_id": {"type": "integer", "format": "int64"},
                                            "charge_id": {"type": "string"},
                                            "amount_cents": {"type": "integer", "format": "int64"}}}
                }
            }),
            _ => return None,
        };
        Some(json!({"required": true, "content": {"application/json": {"schema": schema}}}))
    }

    fn timestamp() -> Value {
        json!({"type": "string", "format": "date-time"})
    }

    fn count() -> Value {
        json!({"type": "integer", "format": "int64", "minimum": 0})
    }

    fn nullable_general_admission() -> Value {
        json!({"oneOf": [{"type": "null"}, general_admission()]})
    }

    /// Where a waiting-room token stands.
    fn queue_place() -> Value {
        let nullable = |t: &str| json!({"type": [t, "null"]});
        object(
            &[
                "event_id",
                "queue_position",
                "position",
                "admitted",
                "admitted_until",
                "state",
                "estimated_wait_ms",
                "poll_after_ms",
            ],
            json!({"event_id": {"type": "string"},
                   "queue_position": {"type": "integer", "format": "int64", "minimum": 1,
                                      "description": "the token's position (blocks of positions per gateway)"},
                   "position": {"type": ["integer", "null"], "minimum": 1,
                                "description": "1-based place among fans not yet admitted, while waiting"},
                   "admitted": {"type": "boolean"},
                   "admitted_until": {"oneOf": [{"type": "null"}, timestamp()]},
                   "state": {"type": "string",
                             "enum": ["pending_shuffle", "waiting", "admitted", "lapsed"]},
                   "estimated_wait_ms": nullable("integer"),
                   "poll_after_ms": {"type": ["integer", "null"], "minimum": 0,
                                     "description": "while waiting (or pending the shuffle): ask again after this many ms"}}),
        )
    }

    /// The schema of a success body, where the document gives one.
    fn success_body(method: &str, path: &str, status: &str) -> Option<Value> {
        let schema = match (method, path, status) {
            ("post", "/v1/sessions", "201") => object(
                &["token", "name", "expires_at"],
                json!({"token": {"type": "string"}, "name": {"type": "string"},
                       "expires_at": timestamp()}),
            ),
            ("post", "/v1/events/{event_id}/queue", "201") => {
                let mut s = queue_place();
                s["required"]
                    .as_array_mut()
                    .expect("array")
                    .push(json!("queue_token"));
                s["properties"]["queue_token"] = json!({"type": "string"});
                s
            }
            ("get", "/v1/events/{event_id}/queue/{token}", "200") => queue_place(),
            ("post", "/v1/events/{event_id}/holds", "201") => object(
                &[
                    "hold_id",
                    "event_id",
                    "seats",
                    "general_admission",
                    "expires_at",
                    "expires_at_ms",
                    "total_cents",
                ],
                json!({"hold_id": count(), "event_id": {"type": "string"},
                       "seats": {"type": "array", "items": {"type": "string"}},
                       "general_admission": nullable_general_admission(),
                       "expires_at": timestamp(), "expires_at_ms": count(),
                       "total_cents": count()}),
            ),
            ("post", "/v1/tickets/verify", "200") => json!({
                "type": "object", "required": ["valid", "signature_valid", "reason"],
                "properties": {
                    "valid": {"type": "boolean"}, "signature_valid": {"type": "boolean"},
                    "reason": {"type": ["string", "null"]},
                    "revoked": {"type": "boolean"}, "checked_in": {"type": "boolean"},
                    "ticket": {"type": "object"}
                }
            }),
            ("get", "/healthz", "200") => object(&["status"], json!({"status": {"const": "ok"}})),
            _ => return None,
        };
        Some(schema)
    }

    /// Adds the shapes above to the skeleton document `doc`.
    pub(super) fn patch(doc: &mut Value) {
        let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
            return;
        };
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                    for p in params.iter_mut() {
                        let name = p["name"].as_str().unwrap_or("").to_string();
                        if let (Some(p), Value::Object(extra)) =
                            (p.as_object_mut(), path_param(&name))
                        {
                            p.extend(extra);
                        }
                    }
                }
                let extra = extra_params(method, path);
                if !extra.is_empty() {
                    match op.get_mut("parameters").and_then(Value::as_array_mut) {
                        Some(params) => params.extend(extra),
                        None => op["parameters"] = Value::Array(extra),
                    }
                }
                if let Some(body) = request_body(method, path) {
                    op["requestBody"] = body;
                }
                if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                    for (status, response) in responses.iter_mut() {
                        if let Some(schema) = success_body(method, path, status) {
                            response["content"] = json!({"application/json": {"schema": schema}});
                        }
                    }
                }
            }
        }
    }
}
