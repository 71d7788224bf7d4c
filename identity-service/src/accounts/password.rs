//! argon2id hashing (OWASP parameters: m = 19 MiB, t = 2, p = 1) in a bounded pool.
//!
//! Each hash takes a core and 19 MiB for ~30 ms, so unbounded hashing under a flood exhausts
//! memory and starves every other call. The pool is `workers` threads of its own (default: all
//! cores but one, so reads keep a core), each with its argon2 memory allocated once, so hashing
//! never allocates and memory stays flat however many requests arrive. At most `queue` more
//! callers wait for a worker; anyone beyond that is refused at once with `RESOURCE_EXHAUSTED`
//! and `RetryInfo`. Callers take their place ([`Passwords::admit`]) *before* any other work on
//! the request, so a refused caller has cost nothing and counted nothing.

use std::{
    str::FromStr,
    sync::{Arc, Mutex, PoisonError, mpsc},
    time::Duration,
};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::error::Error;

/// The parameters of new hashes.
fn params() -> Result<Params, Error> {
    Params::new(19_456, 2, 1, None).map_err(Error::internal)
}

/// Stored hashes asking for more memory than this are refused rather than allocated.
const MAX_BLOCKS: u32 = 64 * 1024;

/// Runs argon2id (or the algorithm a stored hash names) in a worker's own memory.
fn compute(
    memory: &mut Vec<Block>,
    (algorithm, version, params): (Algorithm, Version, Params),
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), Error> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .map_err(Error::internal)
}

fn hash_with(memory: &mut Vec<Block>, password: &SecretString) -> Result<String, Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let params = params()?;
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_buf).map_err(Error::internal)?;
    let setting = (Algorithm::Argon2id, Version::V0x13, params.clone());
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        compute(memory, setting, password.expose_secret().as_bytes(), salt_bytes, out)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(Error::internal)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(Error::internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

fn verify_with(
    memory: &mut Vec<Block>,
    password: &SecretString,
    stored: &str,
) -> Result<bool, Error> {
    let parsed = PasswordHash::new(stored).map_err(Error::internal)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(Error::internal("stored password hash has no salt or output"));
    };
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(Error::internal)?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(Error::internal)?;
    let params = Params::try_from(&parsed).map_err(Error::internal)?;
    if params.m_cost() > MAX_BLOCKS {
        return Err(Error::internal("stored password hash asks for too much memory"));
    }
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(Error::internal)?;
    let setting = (algorithm, version.unwrap_or_default(), params);
    let computed = Output::init_with(expected.len(), |out| {
        compute(memory, setting, password.expose_secret().as_bytes(), salt_bytes, out)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(Error::internal)?;
    // `Output`'s equality is constant-time.
    Ok(computed == expected)
}

/// The answer to a caller who finds the pool and its queue full.
pub const BUSY: Error =
    Error::Throttled { message: "server busy, retry shortly", retry_after: Duration::from_secs(1) };

/// How the hashing threads give way to the rest of the machine (`HASH_WORKER_NICE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPriority {
    /// Linux's `SCHED_IDLE` (written `idle`): hashing runs on CPU time nothing else wants, and
    /// any other thread that wakes takes the core from it at once, so a login flood adds the
    /// least to the latency of reads and token checks on the same machine. On a machine kept
    /// busy by other work, logins get almost no CPU (a test suite running beside them slowed a
    /// login past a second). Where the policy cannot be set, the threads run at nice 19.
    Idle,
    /// A nice value from 0 (normal priority) to 19 (the default is 10): the scheduler shares
    /// the CPU by weight, so logins always progress, and a waking thread may wait for a
    /// hashing one to be preempted.
    Nice(i32),
}

impl FromStr for HashPriority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("idle") {
            return Ok(Self::Idle);
        }
        match s.parse::<i32>() {
            Ok(n) if (0..=19).contains(&n) => Ok(Self::Nice(n)),
            _ => Err("must be idle or a nice value from 0 to 19".into()),
        }
    }
}

/// Work for a hashing thread: runs with the thread's memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Hashes and verifies passwords in the bounded pool. Holds a dummy hash so a login for an
/// unknown email costs the same as one for a known email. The threads end when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Passwords {
    dummy: Arc<str>,
    /// Places for running and waiting callers together.
    places: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
}

impl Passwords {
    /// A pool of `workers` threads (at least 1) running at `priority` and `queue` waiting
    /// places; computes the dummy hash (blocking; call at start-up).
    pub fn new(workers: usize, queue: usize, priority: HashPriority) -> Result<Self, Error> {
        let workers = workers.max(1);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let blocks = params()?.block_count();
        for i in 0..workers {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_priority(priority);
                    let mut memory = vec![Block::default(); blocks];
                    loop {
                        let job = receiver.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(Error::internal)?;
        }
        let mut memory = Vec::new();
        let dummy = hash_with(&mut memory, &SecretString::from("not a real password, for timing"))?;
        Ok(Self { dummy: dummy.into(), places: Arc::new(Semaphore::new(workers + queue)), jobs })
    }

    /// A place in the pool for one request, or [`BUSY`] at once when none is free.
    pub fn admit(&self) -> Result<HashSlot, Error> {
        let place = self.places.clone().try_acquire_owned().map_err(|_| BUSY)?;
        Ok(HashSlot { passwords: self.clone(), place: Arc::new(place) })
    }
}

/// Gives the calling thread `priority`. Linux keeps the policy and the nice value per thread
/// (`sched_setscheduler` and `setpriority` with pid 0 change the calling thread only). Hashing
/// then yields the CPU to the rest of the process and the machine when they need it, and uses
/// it fully otherwise. A refusal (a sandbox forbidding it) is logged; `idle` then falls back to
/// nice 19, and a nice value to normal priority.
fn lower_priority(priority: HashPriority) {
    let nice = match priority {
        HashPriority::Nice(0) => return,
        HashPriority::Nice(nice) => nice,
        HashPriority::Idle => match sched_idle() {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not give the hashing thread SCHED_IDLE; nice 19");
                19
            }
        },
    };
    if let Err(e) = rustix::process::setpriority_process(None, nice) {
        tracing::warn!(error = %e, nice, "could not lower the hashing thread's priority");
    }
}

/// Puts the calling thread under `SCHED_IDLE` (no privilege needed to lower one's own policy).
#[cfg(target_os = "linux")]
fn sched_idle() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` that the call only reads; pid 0 names the calling
    // thread; the call has no other memory effects.
    match unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(target_os = "linux"))]
fn sched_idle() -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "SCHED_IDLE is Linux's"))
}

/// A request's place in the hashing pool; its hashes run one at a time.
pub struct HashSlot {
    passwords: Passwords,
    /// Shared with the running job, so a request dropped mid-hash keeps its place until the
    /// hash is done: never more than `workers + queue` jobs exist.
    place: Arc<OwnedSemaphorePermit>,
}

impl HashSlot {
    /// Runs `work` on a hashing thread and waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (answer, answered) = oneshot::channel();
        let place = self.place.clone();
        let job: Job = Box::new(move |memory| {
            let _place = place;
            let _ = answer.send(work(memory));
        });
        self.passwords.jobs.send(job).map_err(|_| Error::internal("hashing threads stopped"))?;
        answered.await.map_err(|_| Error::internal("hashing thread dropped a job"))?
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: SecretString) -> Result<String, Error> {
        self.run(move |memory| hash_with(memory, &password)).await
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) the dummy is checked
    /// and the answer is always false.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, Error> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.passwords.dummy.to_string());
        let ok = self.run(move |memory| verify_with(memory, &password, &hash)).await?;
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    #[tokio::test]
    async fn callers_beyond_the_workers_and_queue_are_refused_at_once() {
        let passwords = Passwords::new(1, 2, HashPriority::Nice(0)).unwrap();
        let held: Vec<HashSlot> = (0..3).map(|_| passwords.admit().unwrap()).collect();
        assert!(matches!(passwords.admit(), Err(Error::Throttled { .. })));
        drop(held);
        let slot = passwords.admit().unwrap();
        let hash = slot.hash(SecretString::from("correct horse")).await.unwrap();
        assert!(
            slot.verify(SecretString::from("correct horse"), Some(hash.clone())).await.unwrap()
        );
        assert!(!slot.verify(SecretString::from("wrong horse"), Some(hash)).await.unwrap());
        assert!(!slot.verify(SecretString::from("correct horse"), None).await.unwrap());
    }

    #[tokio::test]
    async fn hashing_threads_run_at_the_configured_nice_value() {
        let ours = rustix::process::getpriority_process(None).unwrap();
        let passwords = Passwords::new(1, 0, HashPriority::Nice(7)).unwrap();
        let slot = passwords.admit().unwrap();
        let theirs = slot
            .run(|_| rustix::process::getpriority_process(None).map_err(Error::internal))
            .await
            .unwrap();
        // A process already nicer than 7 cannot go back (without privileges): it stays as is.
        assert_eq!(theirs, ours.max(7));
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), ours, "caller unchanged");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn idle_hashing_threads_run_under_sched_idle() {
        let policy = || {
            // SAFETY: no arguments but the calling thread (pid 0); reads no memory of ours.
            unsafe { libc::sched_getscheduler(0) }
        };
        let ours = policy();
        let passwords = Passwords::new(1, 0, HashPriority::Idle).unwrap();
        let slot = passwords.admit().unwrap();
        let theirs = slot.run(move |_| Ok(policy())).await.unwrap();
        assert_eq!(theirs, libc::SCHED_IDLE);
        assert_eq!(policy(), ours, "caller unchanged");
        assert_ne!(ours, libc::SCHED_IDLE);
    }

    #[test]
    fn the_priority_setting_takes_idle_or_a_nice_value() {
        assert_eq!("idle".parse(), Ok(HashPriority::Idle));
        assert_eq!("IDLE".parse(), Ok(HashPriority::Idle));
        assert_eq!("0".parse(), Ok(HashPriority::Nice(0)));
        assert_eq!("19".parse(), Ok(HashPriority::Nice(19)));
        for bad in ["20", "-1", "", "low", "10.5"] {
            assert!(bad.parse::<HashPriority>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hashes_interoperate_with_the_argon2_crate() {
        let mut memory = Vec::new();
        let ours = hash_with(&mut memory, &SecretString::from("pw one")).unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"pw one", &parsed).is_ok());

        // Hashes stored by the first round (argon2's own hasher) still verify.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params().unwrap());
        let theirs = argon.hash_password(b"pw two", &salt).unwrap().to_string();
        assert!(verify_with(&mut memory, &SecretString::from("pw two"), &theirs).unwrap());
        assert!(!verify_with(&mut memory, &SecretString::from("pw one"), &theirs).unwrap());
    }
}
