//! What holds for every route of the OpenAPI document, applied once over the generated
//! document instead of repeated on each handler: every `{name}` in a path is a declared string
//! parameter, an `Idempotency-Key` is what the server takes (at most 255 visible ASCII
//! characters; a blank one is none), and every error a route answers carries the one error body
//! `{"error": "..."}`, with 400 (a malformed body, parameter or header) where a route takes
//! any, and 401 and 403 where it takes a key.

use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Required, Response, ResponseBuilder,
    Schema, Type,
};

/// The error body's schema name.
const ERROR: &str = "Error";

pub(crate) struct Conventions;

impl utoipa::Modify for Conventions {
    fn modify(&self, doc: &mut OpenApi) {
        let error = ObjectBuilder::new()
            .property("error", ObjectBuilder::new().schema_type(Type::String))
            .required("error")
            .description(Some("What is wrong, in words; never a value sent."))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .schemas
            .insert(ERROR.into(), RefOr::T(Schema::Object(error)));
        for (path, item) in &mut doc.paths.paths {
            let names: Vec<&str> = path
                .split('/')
                .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                declare_path_parameters(operation, &names);
                bound_idempotency_key(operation);
                document_errors(operation);
            }
        }
    }
}

fn declare_path_parameters(operation: &mut Operation, names: &[&str]) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    for name in names {
        let declared = parameters
            .iter()
            .any(|p| p.name == *name && p.parameter_in == ParameterIn::Path);
        if !declared {
            parameters.push(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            );
        }
    }
    if parameters.is_empty() {
        operation.parameters = None;
    }
}

fn bound_idempotency_key(operation: &mut Operation) {
    let keys = operation.parameters.iter_mut().flatten().filter(|p| {
        p.parameter_in == ParameterIn::Header && p.name.eq_ignore_ascii_case("idempotency-key")
    });
    for key in keys {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(255))
            .pattern(Some("^[\t -~]*$"));
        key.schema = Some(RefOr::T(Schema::Object(schema.build())));
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(ERROR)))
        .build();
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build(),
    )
}

fn document_errors(operation: &mut Operation) {
    let takes_input = operation.request_body.is_some()
        || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let takes_key = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let responses = &mut operation.responses.responses;
    for (status, response) in responses.iter_mut() {
        let failure = status.starts_with('4') || status.starts_with('5');
        let bare = match response {
            RefOr::T(r) if failure && r.content.is_empty() => Some(r.description.clone()),
            _ => None,
        };
        if let Some(description) = bare {
            *response = error_response(&description);
        }
    }
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.into())
            .or_insert_with(|| error_response(description));
    };
    if takes_input {
        add("400", "a malformed body, parameter or header");
    }
    if takes_key {
        add(
            "401",
            "no API key, an unknown one, or one disabled (the message says why)",
        );
        add("403", "the key's role may not call this route");
    }
}
