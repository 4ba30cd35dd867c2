//! `autoheal mcp` as an MCP client sees it: newline-delimited JSON-RPC over stdio against
//! the seeded test bed. Every tool is listed with its schema and the read-only annotation;
//! the eight example questions are answered by one call each; a failing call is a tool
//! result with `isError: true` carrying the error, not a success.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use serde_json::{Value, json};
use support::TestBed;

struct McpClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl McpClient {
    fn start(bed: &TestBed) -> Self {
        let mut child = bed
            .tool_command()
            .arg("mcp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start autoheal mcp");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut client = Self {
            child,
            stdin,
            stdout,
            next_id: 1,
        };
        let init = client.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "autoheal-test", "version": "1"}}),
        );
        assert!(init["capabilities"]["tools"].is_object(), "{init}");
        assert_eq!(init["serverInfo"]["name"], "autoheal", "{init}");
        assert_eq!(init["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            init["instructions"].as_str().unwrap().contains("resolved"),
            "the agent is told how names are resolved: {init}"
        );
        client.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        client
    }

    fn send(&mut self, message: Value) {
        writeln!(self.stdin, "{message}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Sends a request and answers its `result` (panics on a JSON-RPC error).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the server closed stdout");
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    /// Calls a tool; answers (isError, the JSON in its text content).
    fn call(&mut self, name: &str, arguments: Value) -> (bool, Value) {
        let result = self.request("tools/call", json!({"name": name, "arguments": arguments}));
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        let body = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {result}"));
        (result["isError"] == json!(true), body)
    }
}

impl Drop for McpClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tool, its arguments, and a fact its answer must hold.
type Question = (&'static str, Value, fn(&Value) -> bool);

#[test]
fn the_mcp_server_lists_every_tool_and_answers_the_eight_questions() {
    let bed = TestBed::start_seeded();
    let mut client = McpClient::start(&bed);

    let listed = client.request("tools/list", json!({}));
    let tools = listed["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 21, "{listed}");
    for tool in tools {
        assert_eq!(tool["annotations"]["readOnlyHint"], true, "{tool}");
        assert_eq!(tool["annotations"]["destructiveHint"], false, "{tool}");
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        assert!(tool["description"].as_str().unwrap().len() > 60);
    }

    let questions: [Question; 8] = [
        (
            "logs_search",
            json!({"log_groups": ["/ecs/payment-service"], "pattern": "ERROR", "since": "1h"}),
            |a| a["events"].as_array().is_some_and(|e| e.len() == 3),
        ),
        ("alarms_list", json!({"state": "ALARM"}), |a| {
            a["count"] == 2
        }),
        (
            "ec2_instances",
            json!({"tags": {"Environment": "production"}}),
            |a| a["count"] == 3,
        ),
        ("ecs_services", json!({"cluster": "main"}), |a| {
            a["services"][1]["desired"] == 4
        }),
        ("eks_nodegroups", json!({}), |a| {
            a["clusters"][0]["nodegroups"][0]["max"] == 6
        }),
        ("elasticache_clusters", json!({}), |a| a["count"] == 4),
        (
            "elasticache_replication_group",
            json!({"id": "cell-a-redis"}),
            |a| a["automatic_failover"] == "enabled" && a["replicas"] == 2,
        ),
        (
            "elasticache_metrics",
            json!({"cluster": "cell-a-redis", "since": "1h"}),
            |a| a["series"][0]["summary"]["max"] == 94.0,
        ),
    ];
    for (name, arguments, holds) in questions {
        let (is_error, answer) = client.call(name, arguments);
        assert!(!is_error, "{name}: {answer}");
        assert!(holds(&answer), "{name}: {answer}");
    }

    // Failures are tool errors with what to do, never successes.
    let (is_error, answer) = client.call(
        "elasticache_replication_group",
        json!({"id": "cell-b-redis"}),
    );
    assert!(is_error);
    assert_eq!(
        answer["error"]["closest"],
        json!(["cell-a-redis"]),
        "{answer}"
    );
    let (is_error, answer) = client.call("alarms_list", json!({"state": 7}));
    assert!(is_error);
    assert_eq!(answer["error"]["argument"], "state", "{answer}");
    let (is_error, answer) = client.call("no_such_tool", json!({}));
    assert!(is_error, "{answer}");
}
