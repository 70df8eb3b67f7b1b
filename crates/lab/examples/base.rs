//! Builds (or finds) the lab's cached base root filesystem and prints where it is and how
//! long that took: CI runs it before the tests, so that a mirror problem shows as itself.

fn main() -> std::process::ExitCode {
    let clock = std::time::Instant::now();
    if let Err(e) = lab::Lab::preflight() {
        eprintln!("lab base: {e}");
        return std::process::ExitCode::from(2);
    }
    match lab::base::ensure() {
        Ok(dir) => {
            println!(
                "lab base: {} ({:.1} s)",
                dir.display(),
                clock.elapsed().as_secs_f64()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lab base: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
