// A kith function in Go, built by Go's own toolchain as a WASI command: it reads an
// order (JSON) on stdin and writes the invoice (JSON) on stdout.
//
//	GOOS=wasip1 GOARCH=wasm go build -o invoice.wasm .
//	kith manifest set invoice.wasm '{"env":{"CURRENCY":"EUR"}}' -o invoice.kith.wasm
//	echo '{"items":[{"name":"tea","price":2.5,"qty":2}],"tax_percent":20}' | \
//	    kith call $(kith publish invoice.kith.wasm)
//
// The currency comes from the manifest's environment. A malformed order is an error:
// a message on stderr and exit code 2.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

type item struct {
	Name  string  `json:"name"`
	Price float64 `json:"price"`
	Qty   int64   `json:"qty"`
}

type order struct {
	Items      []item  `json:"items"`
	TaxPercent float64 `json:"tax_percent"`
}

type line struct {
	Name  string `json:"name"`
	Qty   int64  `json:"qty"`
	Cents int64  `json:"cents"`
}

type invoice struct {
	Currency string `json:"currency"`
	Lines    []line `json:"lines"`
	Subtotal int64  `json:"subtotal_cents"`
	Tax      int64  `json:"tax_cents"`
	Total    int64  `json:"total_cents"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("cannot read the input: %v", err)
	}
	var o order
	if err := json.Unmarshal(in, &o); err != nil {
		fail("the input is not an order: %v", err)
	}
	if len(o.Items) == 0 {
		fail("an order needs at least one item")
	}
	inv := invoice{Currency: os.Getenv("CURRENCY")}
	if inv.Currency == "" {
		inv.Currency = "XXX"
	}
	for _, it := range o.Items {
		if it.Qty <= 0 || it.Price < 0 {
			fail("item %q: quantity must be above 0 and price at least 0", it.Name)
		}
		cents := int64(math.Round(it.Price*100)) * it.Qty
		inv.Lines = append(inv.Lines, line{Name: it.Name, Qty: it.Qty, Cents: cents})
		inv.Subtotal += cents
	}
	sort.SliceStable(inv.Lines, func(i, j int) bool { return inv.Lines[i].Cents > inv.Lines[j].Cents })
	inv.Tax = int64(math.Round(float64(inv.Subtotal) * o.TaxPercent / 100))
	inv.Total = inv.Subtotal + inv.Tax
	if err := json.NewEncoder(os.Stdout).Encode(inv); err != nil {
		fail("cannot write the invoice: %v", err)
	}
}
