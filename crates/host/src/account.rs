//! Users of this machine, from the password database (`getpwnam_r`/`getpwuid_r`): who we
//! are, and where another user's home is (its `~/.ssh`).

use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// One user of this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

/// The user called `name`, or the effective user when `None`; `None` when there is none.
pub fn lookup(name: Option<&str>) -> Option<Account> {
    let mut buf = vec![0u8; 16384];
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let cname = match name {
        Some(n) => Some(CString::new(n).ok()?),
        None => None,
    };
    // SAFETY: getpw*_r write into `pwd` and `buf`, both live and sized as declared; on
    // success `result` points to `pwd`, whose strings point into `buf`, read before `buf`
    // goes.
    unsafe {
        let rc = match &cname {
            Some(c) => libc::getpwnam_r(
                c.as_ptr(),
                pwd.as_mut_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            ),
            None => libc::getpwuid_r(
                libc::geteuid(),
                pwd.as_mut_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            ),
        };
        if rc != 0 || result.is_null() {
            return None;
        }
        let p = &*result;
        Some(Account {
            name: CStr::from_ptr(p.pw_name).to_string_lossy().into_owned(),
            uid: p.pw_uid,
            gid: p.pw_gid,
            home: PathBuf::from(CStr::from_ptr(p.pw_dir).to_string_lossy().into_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_is_found_by_name() {
        let root = super::lookup(Some("root")).unwrap();
        assert_eq!((root.uid, root.home.to_str()), (0, Some("/root")));
        assert!(super::lookup(Some("no such user here")).is_none());
        assert!(super::lookup(None).is_some());
    }
}
