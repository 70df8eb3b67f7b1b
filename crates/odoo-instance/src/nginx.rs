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
    format!(
        "# odoo-standby: site for instance {name} on the backup server.\n\
         # Enable it yourself (ln -s into sites-enabled, nginx -t, reload), add TLS, then point DNS here.\n\
         # Odoo must run with proxy_mode = True behind it.\n\
         upstream odoo_{name} {{\n    server 127.0.0.1:{http};\n}}\n\
         upstream odoo_{name}_live {{\n    server 127.0.0.1:{gevent};\n}}\n\
         map $http_upgrade $connection_upgrade_{name} {{\n    default upgrade;\n    ''      close;\n}}\n\
         server {{\n    listen 80;\n    server_name {names};\n    client_max_body_size 200m;\n    \
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
        names = s.server_names.join(" "),
    )
}

/// What odoo.conf lacks for running behind this site.
pub fn conf_warnings(conf: &crate::OdooConf) -> Vec<String> {
    let mut w = Vec::new();
    if conf.get("proxy_mode").map(str::trim) != Some("True") {
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
        };
        let t = render(&s);
        assert!(t.contains("location /websocket") && !t.contains("/longpolling"));
        assert!(t.contains("alias /srv/b/vps1/data_dir/filestore;"));
        assert!(t.contains("server 127.0.0.1:8072;") && t.contains("server_name erp.example.com;"));
        s.odoo_major = 15;
        s.x_sendfile_data_dir = None;
        let t = render(&s);
        assert!(t.contains("location /longpolling") && !t.contains("/web/filestore"));
    }
}
