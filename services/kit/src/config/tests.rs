use super::*;

#[test]
fn probe() {
    let cases = [
        "[ingest]\nhttp_listen = \"x:1\"\nmax_bdy_bytes = 3\n",
        "\n[ingest]\nmax_body_bytes = \"big\"\n",
        "foo = 1\n",
        "[[channels]]\nid = \"a\"\nkind = \"slack\"\n\n[[channels]]\nid = \"b\"\nkidn = \"slack\"\n",
        "[[channels]]\nid = \"a\"\nkind = \"slack\"\n\n[[channels]]\nid = \"b\"\n\n",
        "[[channels]]\nid = \"a\"\nkind = \"smtp\"\n",
        "[[channels]]\nid = \"a\"\nkind = \"email\"\nrecipients = 3\n",
        "[[channels]]\nid = \"a\"\nkind = \"email\"\nrecipients = [\n \"a\",\n 3]\n",
        "[[channels]]\nid = \"a\"\nkind = \"email\"\n\n[[channels]]\nid = \"b\"\nkind = \"slack\"\n",
        "[dedup]\nkey = [\"nme\"]\n",
        "[ingest\n",
        "a = 1\na = 2\n",
        "[[rules]]\nname='r'\nwatch='W'\nalert.name = 'x'\nalert.nme = 3\n",
    ];
    for c in cases {
        eprintln!("{:?}\n  => {}", c, Config::parse(c, &Env::default()).map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()));
    }
}
