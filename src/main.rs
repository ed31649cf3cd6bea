//! `booking`: the one binary an operator runs.
//!
//! It will run a node (`booking node`), a gateway (`booking gateway`) or a whole
//! local cluster (`booking up`). Those subcommands arrive with the node and
//! gateway issues; until then this binary only says so, and does not pretend to
//! run anything.

fn main() {
    eprintln!("booking: no subcommands are implemented yet (node, gateway and up arrive with the node and gateway issues)");
    std::process::exit(2);
}
