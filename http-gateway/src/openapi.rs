//! The OpenAPI 3.1 document at `/openapi.json`, built with utoipa from the
//! route table in `api::ops::openapi_routes` so every route is described.
//!
//! Owns: the document. Must not: drift from the router; the API tests check
//! that every documented path answers something other than 404 and that
//! every routed path is documented. Caveat: request and response bodies are
//! described in prose and by the `Problem` schema, not field by field.

use std::sync::OnceLock;

use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
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
    if auth != "none" {
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
        if *auth == "user" || *auth == "admin" {
            op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
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
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
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

/// The document as JSON, built once.
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| build().to_json().unwrap_or_else(|_| "{}".to_string()))
        .clone()
}
