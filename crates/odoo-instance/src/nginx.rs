//! An nginx site for a promoted instance, written to a file for the operator to enable (we
//! never reload someone's nginx). Follows Odoo's deployment docs: proxy headers (Odoo needs
//! `proxy_mode = True`), `/websocket` from Odoo 16 on and `/longpolling` before, and
//! `/web/filestore` served by nginx when Odoo has `x_sendfile` on.

use std::path::PathBuf;

/// What the site needs.
#[derive(Clone, Debug)]
pub struct NginxSite {
    /// The instance (names the upstreams).
    pub instance: String,
    /// The server name(s) clients use (the VPS's DNS name).
    pub server_names: Vec<String>,
    /// Odoo's HTTP port on the backup.
    pub http_port: u16,
    /// Odoo's gevent (longpolling) port on the backup.
    pub gevent_port: u16,
    /// Odoo's major version (16+ uses /websocket).
    pub odoo_major: u32,
    /// With x_sendfile on: the data_dir, whose filestore nginx serves.
    pub x_sendfile_data_dir: Option<PathBuf>,
    /// TLS: the certificate chain and its key. With them the site serves HTTPS on 443 and
    /// sends plain HTTP there; without, it serves plain HTTP on 80.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// The site's text.
pub fn render(s: &NginxSite) -> String {
    let name = &s.instance;
    let (live_path, live_note) = if s.odoo_major >= 16 {
        ("/websocket", "Odoo 16+: websocket")
    } else {
        ("/longpolling", "before Odoo 16: longpolling")
    };
    let sendfile = match &s.x_sendfile_data_dir {
        Some(d) => format!(
            "\n    # x_sendfile is on: Odoo answers with X-Accel-Redirect and nginx serves the file.\n    \
             location /web/filestore {{\n        internal;\n        alias {}/filestore;\n    }}\n",
            d.display()
        ),
        None => String::new(),
    };
    let names = s.server_names.join(" ");
    let (listen, redirect, tls_note) = match &s.tls {
        Some((cert, key)) => (
            format!(
                "listen 443 ssl;\n    listen [::]:443 ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    \
                 ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL_{name}:10m;",
                cert.display(),
                key.display()
            ),
            format!(
                "server {{\n    listen 80;\n    listen [::]:80;\n    server_name {names};\n    \
                 return 301 https://$host$request_uri;\n}}\n"
            ),
            "",
        ),
        None => (
            "listen 80;\n    listen [::]:80;".to_owned(),
            String::new(),
            " add TLS (tls_certificate and tls_certificate_key in the config),",
        ),
    };
    format!(
        "# odoo-standby: site for instance {name} on the backup server.\n\
         # Enable it yourself (ln -s into sites-enabled, nginx -t, reload),{tls_note} then point DNS here.\n\
         # Odoo must run with proxy_mode = True behind it.\n\
         upstream odoo_{name} {{\n    server 127.0.0.1:{http};\n}}\n\
         upstream odoo_{name}_live {{\n    server 127.0.0.1:{gevent};\n}}\n\
         map $http_upgrade $connection_upgrade_{name} {{\n    default upgrade;\n    ''      close;\n}}\n\
         {redirect}\
         server {{\n    {listen}\n    server_name {names};\n    client_max_body_size 200m;\n    \
         proxy_read_timeout 720s;\n    proxy_connect_timeout 720s;\n    proxy_send_timeout 720s;\n\n    \
         # {live_note}\n    location {live_path} {{\n        proxy_pass http://odoo_{name}_live;\n        \
         proxy_set_header Upgrade $http_upgrade;\n        proxy_set_header Connection $connection_upgrade_{name};\n        \
         proxy_set_header X-Forwarded-Host $http_host;\n        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        \
         proxy_set_header X-Forwarded-Proto $scheme;\n        proxy_set_header X-Real-IP $remote_addr;\n    }}\n\n    \
         location / {{\n        proxy_pass http://odoo_{name};\n        proxy_set_header X-Forwarded-Host $http_host;\n        \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        proxy_set_header X-Forwarded-Proto $scheme;\n        \
         proxy_set_header X-Real-IP $remote_addr;\n        proxy_redirect off;\n    }}\n{sendfile}\n    \
         gzip on;\n    gzip_types text/css text/plain application/json application/javascript;\n}}\n",
        http = s.http_port,
        gevent = s.gevent_port,
    )
}

/// What odoo.conf lacks for running behind this site.
pub fn conf_warnings(conf: &crate::OdooConf) -> Vec<String> {
    let mut w = Vec::new();
    if conf.flag("proxy_mode") != Some(true) {
        w.push("odoo.conf has no `proxy_mode = True`: behind nginx, Odoo would see every client as 127.0.0.1 and build wrong URLs".to_owned());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_or_longpolling_by_version_and_sendfile() {
        let mut s = NginxSite {
            instance: "vps1".into(),
            server_names: vec!["erp.example.com".into()],
            http_port: 8069,
            gevent_port: 8072,
            odoo_major: 17,
            x_sendfile_data_dir: Some("/srv/b/vps1/data_dir".into()),
            tls: None,
        };
        let t = render(&s);
        assert!(t.contains("location /websocket") && !t.contains("/longpolling"));
        assert!(t.contains("alias /srv/b/vps1/data_dir/filestore;"));
        assert!(t.contains("server 127.0.0.1:8072;") && t.contains("server_name erp.example.com;"));
        s.odoo_major = 15;
        s.x_sendfile_data_dir = None;
        let t = render(&s);
        assert!(t.contains("location /longpolling") && !t.contains("/web/filestore"));
        assert!(t.contains("listen 80;\n    listen [::]:80;") && !t.contains("443"));
    }

    #[test]
    fn with_a_certificate_it_serves_https_and_sends_http_there() {
        let t = render(&NginxSite {
            instance: "vps1".into(),
            server_names: vec!["erp.example.com".into(), "www.erp.example.com".into()],
            http_port: 8079,
            gevent_port: 8082,
            odoo_major: 17,
            x_sendfile_data_dir: None,
            tls: Some(("/etc/ssl/erp.pem".into(), "/etc/ssl/erp.key".into())),
        });
        assert!(t.contains("listen 443 ssl;\n    listen [::]:443 ssl;\n    ssl_certificate /etc/ssl/erp.pem;\n    ssl_certificate_key /etc/ssl/erp.key;"), "{t}");
        assert!(t.contains("return 301 https://$host$request_uri;"), "{t}");
        assert!(
            t.contains("server_name erp.example.com www.erp.example.com;"),
            "{t}"
        );
        assert!(t.contains("server 127.0.0.1:8079;") && t.contains("server 127.0.0.1:8082;"));
    }

    #[test]
    fn proxy_mode_is_read_as_odoo_reads_it() {
        for (text, warned) in [
            ("True", false),
            ("true", false),
            ("False", true),
            ("1", true),
        ] {
            let c =
                crate::OdooConf::parse(&format!("[options]\nproxy_mode = {text}\n"), "t").unwrap();
            assert_eq!(!conf_warnings(&c).is_empty(), warned, "proxy_mode = {text}");
        }
    }
}
