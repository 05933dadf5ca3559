//! A small line diff for --dry-run (files here are a few dozen lines; an LCS table is fine).

/// Lines beyond which the diff is summarised instead of computed (the table is n*m).
const MAX_LINES: usize = 2000;

/// `-`/`+` lines turning `old` into `new` (context lines omitted), with `path` headers.
pub fn unified(path: &str, old: Option<&str>, new: &str) -> String {
    let a: Vec<&str> = old.map(|o| o.lines().collect()).unwrap_or_default();
    let b: Vec<&str> = new.lines().collect();
    let mut out = format!(
        "--- {}\n+++ {path}\n",
        if old.is_some() { path } else { "/dev/null" }
    );
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        out.push_str(&format!(
            "@@ {} lines -> {} lines (too long to diff) @@\n",
            a.len(),
            b.len()
        ));
        return out;
    }
    // lcs[i][j] = length of the LCS of a[i..] and b[j..]. The table is (n+1) x (m+1) and every
    // index below is guarded by i < n / j < m (or the short-circuit on j == m), so no index can
    // be out of bounds whatever the file contents.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        } else if j < m {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_lines_only() {
        let d = unified("/etc/x", Some("a\nb\nc\n"), "a\nB\nc\nd\n");
        assert_eq!(d, "--- /etc/x\n+++ /etc/x\n-b\n+B\n+d\n");
        let d = unified("/etc/y", None, "new\n");
        assert_eq!(d, "--- /dev/null\n+++ /etc/y\n+new\n");
        assert_eq!(unified("/z", Some("same\n"), "same\n"), "--- /z\n+++ /z\n");
    }
}
