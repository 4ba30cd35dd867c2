//! `autoheal tool NAME --args JSON`: runs one tool with the ambient AWS credentials (in a
//! sandbox, the ones the daemon injected). Text on a terminal, JSON otherwise or with
//! `--output json`. Exit 65 on bad arguments or an unknown name, 77 when AWS denies the
//! call, 69 when AWS cannot be reached or fails. Secrets in the answer are masked unless
//! `--no-mask`.

use std::io::IsTerminal;

use serde_json::Value;

use crate::cli::{Output, ToolArgs};
use crate::exit_code::Exit;
use crate::stdout::print_line;
use crate::tools::{self, AwsContext, ToolError, mask_answer, mask_text, render};

pub async fn run(args: &ToolArgs) -> Exit {
    let output = args.output.unwrap_or(if std::io::stdout().is_terminal() {
        Output::Text
    } else {
        Output::Json
    });
    let result = match serde_json::from_str::<Value>(&args.args) {
        Err(err) => Err(ToolError::bad("--args", format!("not JSON: {err}"))),
        Ok(arguments) => match tools::find(&args.name) {
            Err(err) => Err(err),
            Ok(tool) => {
                let ctx = AwsContext::from_environment(args.region.clone()).await;
                tool.run(&ctx, arguments).await.map(|answer| {
                    if args.no_mask {
                        answer
                    } else {
                        mask_answer(answer)
                    }
                })
            }
        },
    };
    match result {
        Ok(answer) => {
            match output {
                Output::Json => print_line(answer),
                Output::Text => print_line(render::text(&answer)),
            }
            Exit::Ok
        }
        Err(err) => {
            // AWS's error messages can quote what they refused: masked like answers.
            match (output, args.no_mask) {
                (Output::Json, true) => print_line(err.to_json()),
                (Output::Json, false) => print_line(mask_answer(err.to_json())),
                (Output::Text, true) => eprintln!("autoheal tool {}: {err}", args.name),
                (Output::Text, false) => {
                    eprintln!(
                        "autoheal tool {}: {}",
                        args.name,
                        mask_text(&err.to_string()).0
                    )
                }
            }
            err.exit()
        }
    }
}
