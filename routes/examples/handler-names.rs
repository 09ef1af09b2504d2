//! Prints the handler names of the route table, one per line: what `scripts/deploy.py check`
//! resolves `[lambda.<name>]` stage tables for before anything else is built (this compiles
//! only the route table).

fn main() {
    for name in wsstack_routes::Handler::names() {
        println!("{name}");
    }
}
