use std::borrow::Cow;

use filature::run_in_green_thread;

#[run_in_green_thread]
fn show<'a>(text: Cow<'a, str>) {
    println!("{text}");
}

fn main() {}
