module canopy.dev/hack/argocd-lua

go 1.22.0

require github.com/yuin/gopher-lua v1.1.1
