//! `autoheal tools`: the catalogue — names, descriptions, argument schemas, IAM actions.

use serde_json::json;

use crate::cli::{Output, OutputArgs};
use crate::exit_code::Exit;
use crate::stdout::print_line;
use crate::tools::catalogue;

pub fn run(args: &OutputArgs) -> Exit {
    let tools = catalogue();
    match args.output {
        Output::Json => {
            let listed: Vec<_> = tools
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "capability": t.capability,
                        "description": t.description,
                        "input_schema": t.input_schema(),
                        "iam_actions": t.iam_actions,
                        "read_only": true,
                    })
                })
                .collect();
            print_line(json!({"tools": listed}));
        }
        Output::Text => {
            for t in &tools {
                let schema = t.input_schema();
                let arguments: Vec<String> = schema["properties"]
                    .as_object()
                    .map(|p| {
                        let required: Vec<&str> = schema["required"]
                            .as_array()
                            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
                            .unwrap_or_default();
                        p.keys()
                            .map(|k| {
                                if required.contains(&k.as_str()) {
                                    k.clone()
                                } else {
                                    format!("{k}?")
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                print_line(format!(
                    "{} {{{}}}\n  {}\n  IAM: {}\n",
                    t.name,
                    arguments.join(", "),
                    t.description,
                    t.iam_actions.join(", ")
                ));
            }
        }
    }
    Exit::Ok
}
