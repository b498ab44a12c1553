// Renders the opsgate-sync template of argocd-notifications-cm.yaml for each Application given,
// the way Argo CD's notifications-engine does (text/template with Sprig's functions; `app` is the
// Application as a map, `context` the ConfigMap's context). It checks that each body is JSON.
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run render.go argocd-notifications-cm.yaml applications/guestbook-succeeded.json
//
// (GOPATH mode with the Debian packages golang-go and golang-github-masterminds-sprig-dev.)
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	var configMap struct{ Data map[string]string }
	if err := yaml.Unmarshal(raw, &configMap); err != nil {
		fail("%v", err)
	}
	var tpl struct {
		Webhook map[string]struct{ Method, Body string }
	}
	if err := yaml.Unmarshal([]byte(configMap.Data["template.opsgate-sync"]), &tpl); err != nil {
		fail("%v", err)
	}
	context := map[string]string{}
	if err := yaml.Unmarshal([]byte(configMap.Data["context"]), &context); err != nil {
		fail("%v", err)
	}
	body := template.Must(template.New("body").Funcs(sprig.TxtFuncMap()).Parse(tpl.Webhook["opsgate"].Body))
	for _, path := range os.Args[2:] {
		appJSON, err := os.ReadFile(path)
		if err != nil {
			fail("%v", err)
		}
		var app map[string]any
		if err := json.Unmarshal(appJSON, &app); err != nil {
			fail("%s: %v", path, err)
		}
		var out strings.Builder
		if err := body.Execute(&out, map[string]any{"app": app, "context": context}); err != nil {
			fail("%s: %v", path, err)
		}
		var check any
		if err := json.Unmarshal([]byte(out.String()), &check); err != nil {
			fail("%s: the body is not JSON: %v\n%s", path, err, out.String())
		}
		fmt.Print(out.String())
	}
}
