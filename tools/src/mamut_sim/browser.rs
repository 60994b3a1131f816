//! SQL Server Browser (MC-SQLR) on UDP: how a client finds the TCP port of a named instance
//! such as `HOST\MAMUT`. Answers CLNT_UCAST_INST (0x04 + instance name) with the instance's
//! SVR_RESP, and CLNT_BCAST_EX / CLNT_UCAST_EX (0x02 / 0x03) with every instance; stays silent
//! for an instance it does not know and for anything else, as SQL Browser does.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const CLNT_BCAST_EX: u8 = 0x02;
const CLNT_UCAST_EX: u8 = 0x03;
const CLNT_UCAST_INST: u8 = 0x04;
const SVR_RESP: u8 = 0x05;

/// The version SQL Browser reports for the stand-in's instances.
const VERSION: &str = "16.0.1000.6";

/// One instance the browser answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The machine name clients use (`ServerName`).
    pub server: String,
    pub name: String,
    pub tcp_port: u16,
}

impl Instance {
    fn describe(&self) -> String {
        format!(
            "ServerName;{};InstanceName;{};IsClustered;No;Version;{VERSION};tcp;{};;",
            self.server, self.name, self.tcp_port
        )
    }
}

/// The answer to one request datagram, `None` when SQL Browser stays silent.
pub fn respond(request: &[u8], instances: &[Instance]) -> Option<Vec<u8>> {
    let data = match *request.first()? {
        CLNT_BCAST_EX | CLNT_UCAST_EX => instances.iter().map(Instance::describe).collect(),
        CLNT_UCAST_INST => {
            // The name is MBCS, at most 32 bytes, optionally NUL-terminated.
            let name = request[1..].split(|&b| b == 0).next().unwrap_or_default();
            let name = std::str::from_utf8(name).ok()?;
            instances
                .iter()
                .find(|i| i.name.eq_ignore_ascii_case(name))?
                .describe()
        }
        _ => return None,
    };
    if data.is_empty() {
        return None;
    }
    let size = u16::try_from(data.len()).ok()?;
    let mut out = Vec::with_capacity(3 + data.len());
    out.push(SVR_RESP);
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(data.as_bytes());
    Some(out)
}

/// A running responder. Dropping it stops it.
pub struct Browser {
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
}

impl Browser {
    /// Binds `listen` (UDP) and answers for `instances` on a background thread.
    pub fn start(listen: SocketAddr, instances: Vec<Instance>) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(listen)?;
        let addr = socket.local_addr()?;
        // Wakes up now and then to notice `stop`.
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        std::thread::Builder::new()
            .name("mamut-sim-browser".into())
            .spawn(move || {
                let mut buf = [0u8; 1024];
                while !flag.load(Ordering::SeqCst) {
                    let Ok((len, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some(answer) = respond(&buf[..len], &instances) {
                        let _ = socket.send_to(&answer, from);
                    }
                }
            })?;
        Ok(Self { addr, stopped })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances() -> Vec<Instance> {
        vec![
            Instance {
                server: "HOST".into(),
                name: "MAMUT".into(),
                tcp_port: 50123,
            },
            Instance {
                server: "HOST".into(),
                name: "OTHER".into(),
                tcp_port: 50124,
            },
        ]
    }

    fn text(answer: &[u8]) -> &str {
        assert_eq!(answer[0], SVR_RESP);
        let size = usize::from(u16::from_le_bytes([answer[1], answer[2]]));
        assert_eq!(size, answer.len() - 3);
        std::str::from_utf8(&answer[3..]).expect("ASCII")
    }

    #[test]
    fn a_named_instance_is_answered_with_its_tcp_port() {
        let answer = respond(b"\x04mamut\x00", &instances()).expect("answered");
        assert_eq!(
            text(&answer),
            "ServerName;HOST;InstanceName;MAMUT;IsClustered;No;Version;16.0.1000.6;tcp;50123;;"
        );
    }

    #[test]
    fn an_enumeration_lists_every_instance() {
        for opcode in [CLNT_BCAST_EX, CLNT_UCAST_EX] {
            let answer = respond(&[opcode], &instances()).expect("answered");
            let text = text(&answer);
            assert!(text.contains("InstanceName;MAMUT;") && text.contains("tcp;50124;;"));
        }
    }

    #[test]
    fn unknown_instances_and_requests_get_no_answer() {
        assert_eq!(respond(b"\x04NOPE", &instances()), None);
        assert_eq!(respond(b"", &instances()), None);
        assert_eq!(respond(b"\x0F\x01MAMUT", &instances()), None);
        assert_eq!(respond(b"\x04\xFF\xFE", &instances()), None);
        assert_eq!(respond(&[CLNT_UCAST_EX], &[]), None);
    }
}
