use filature::run_in_thread;

struct Config;

impl Config {
    #[run_in_thread("config")]
    fn save(&self) {}
}

fn main() {}
