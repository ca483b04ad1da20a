//! Loopback ports for the real servers the host tests start.

/// A loopback port nothing listens on right now, and never handed out
/// before in this test run: the kernel may offer a just-released port to
/// the next `bind(0)`, and two tests running side by side would then start
/// their servers on the same port.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..1000 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no loopback port left that was not handed out already");
}
