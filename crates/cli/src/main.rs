//! `attestmesh`: one binary, every role as a subcommand.

fn main() {
    eprintln!("attestmesh: no subcommands are implemented yet");
    std::process::exit(2);
}
