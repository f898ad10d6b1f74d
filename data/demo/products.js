/* Demo Shop catalogue: 24 products in 4 categories. Prices are in EUR and all distinct, so every
   "cheapest" / "most expensive" question has exactly one right answer. The facts the bundled
   examples depend on are listed in docs/demo-shop.md (checked by tests/test_demo_site.py); change
   them with care. */
"use strict";

window.DEMO_CATEGORIES = [
  { id: "cables", name: "Cables", blurb: "USB-C, USB-A, Lightning, HDMI and more." },
  { id: "chargers", name: "Chargers", blurb: "Wall, car and wireless chargers, power banks." },
  { id: "headphones", name: "Headphones", blurb: "Over-ear, in-ear and wireless earbuds." },
  { id: "keyboards", name: "Keyboards", blurb: "Mechanical, wireless, ergonomic and keypads." },
];

window.DEMO_PRODUCTS = [
  // ---- Cables ----
  {
    id: "cab-01", name: "USB-C to USB-C Cable 0.5 m", category: "cables", brand: "Voltline",
    price: 5.49, rating: 4.2, stock: 240, featured: false,
    description: "Short USB-C cable for phones, tablets and power banks. Charges at up to 60 W.",
    specs: { "Connector A": "USB-C", "Connector B": "USB-C", "Length": "0.5 m", "Max power": "60 W", "Data rate": "480 Mbit/s", "Colour": "Black" },
  },
  {
    id: "cab-02", name: "USB-C to USB-C Cable 1 m", category: "cables", brand: "Voltline",
    price: 8.99, rating: 4.5, stock: 180, featured: true,
    description: "Everyday USB-C cable for laptops and phones, 60 W charging and USB 3.2 data.",
    specs: { "Connector A": "USB-C", "Connector B": "USB-C", "Length": "1 m", "Max power": "60 W", "Data rate": "10 Gbit/s", "Colour": "Black" },
  },
  {
    id: "cab-03", name: "USB-C to USB-C Braided Cable 2 m", category: "cables", brand: "Northwave",
    price: 14.49, rating: 4.8, stock: 64, featured: false,
    description: "Nylon-braided USB-C cable rated for 100 W laptop charging. Built to survive bags and drawers.",
    specs: { "Connector A": "USB-C", "Connector B": "USB-C", "Length": "2 m", "Max power": "100 W", "Data rate": "480 Mbit/s", "Colour": "Grey" },
  },
  {
    id: "cab-04", name: "USB-A to USB-C Cable 1 m", category: "cables", brand: "Voltline",
    price: 6.79, rating: 4.0, stock: 310, featured: false,
    description: "Connects USB-C devices to older computers and chargers with a USB-A port.",
    specs: { "Connector A": "USB-A", "Connector B": "USB-C", "Length": "1 m", "Max power": "15 W", "Data rate": "480 Mbit/s", "Colour": "White" },
  },
  {
    id: "cab-05", name: "HDMI 2.1 Cable 2 m", category: "cables", brand: "Northwave",
    price: 11.99, rating: 4.6, stock: 95, featured: false,
    description: "Ultra High Speed HDMI cable for 4K at 120 Hz and 8K at 60 Hz.",
    specs: { "Connector A": "HDMI", "Connector B": "HDMI", "Length": "2 m", "Bandwidth": "48 Gbit/s", "Max resolution": "8K at 60 Hz", "Colour": "Black" },
  },
  {
    id: "cab-06", name: "Micro-USB Cable 1 m", category: "cables", brand: "Voltline",
    price: 3.99, rating: 3.7, stock: 150, featured: false,
    description: "For older phones, e-readers and accessories with a Micro-USB port.",
    specs: { "Connector A": "USB-A", "Connector B": "Micro-USB", "Length": "1 m", "Max power": "10 W", "Data rate": "480 Mbit/s", "Colour": "Black" },
  },
  // ---- Chargers ----
  {
    id: "chg-01", name: "20 W USB-C Wall Charger", category: "chargers", brand: "Voltline",
    price: 12.49, rating: 4.3, stock: 200, featured: false,
    description: "Compact single-port wall charger that fast-charges most phones.",
    specs: { "Ports": "1 × USB-C", "Max output": "20 W", "Plug": "EU (Type C)", "Weight": "38 g" },
  },
  {
    id: "chg-02", name: "65 W GaN Charger, 3 Ports", category: "chargers", brand: "Northwave",
    price: 39.9, rating: 4.7, stock: 75, featured: true,
    description: "Gallium-nitride charger small enough for a pocket; powers a laptop and a phone at once.",
    specs: { "Ports": "2 × USB-C, 1 × USB-A", "Max output": "65 W", "Plug": "EU (Type C)", "Weight": "112 g" },
  },
  {
    id: "chg-03", name: "Wireless Charging Pad 15 W", category: "chargers", brand: "Lumo",
    price: 19.95, rating: 3.9, stock: 88, featured: false,
    description: "Qi wireless pad with a non-slip surface and a soft status light.",
    specs: { "Standard": "Qi", "Max output": "15 W", "Input": "USB-C", "Diameter": "10 cm" },
  },
  {
    id: "chg-04", name: "Dual-Port Car Charger", category: "chargers", brand: "Voltline",
    price: 14.99, rating: 4.1, stock: 130, featured: false,
    description: "Charges two devices from a car's 12 V socket.",
    specs: { "Ports": "1 × USB-C, 1 × USB-A", "Max output": "36 W", "Input": "12–24 V", "Weight": "27 g" },
  },
  {
    id: "chg-05", name: "Power Bank 10,000 mAh", category: "chargers", brand: "Lumo",
    price: 24.5, rating: 4.4, stock: 110, featured: false,
    description: "Slim power bank that refills a phone about twice.",
    specs: { "Capacity": "10,000 mAh", "Ports": "1 × USB-C, 1 × USB-A", "Max output": "22.5 W", "Weight": "210 g" },
  },
  {
    id: "chg-06", name: "100 W Desktop Charging Station", category: "chargers", brand: "Northwave",
    price: 59.0, rating: 4.6, stock: 40, featured: false,
    description: "Six-port station that keeps a whole desk of devices charged.",
    specs: { "Ports": "4 × USB-C, 2 × USB-A", "Max output": "100 W", "Plug": "EU (Type F)", "Weight": "380 g" },
  },
  // ---- Headphones ----
  {
    id: "hp-01", name: "Studio Over-Ear Headphones", category: "headphones", brand: "Sonora",
    price: 89.0, rating: 4.6, stock: 35, featured: false,
    description: "Closed-back wired headphones with a flat, detailed sound for mixing and listening.",
    specs: { "Type": "Over-ear, closed", "Connection": "3.5 mm jack", "Driver": "50 mm", "Weight": "275 g" },
  },
  {
    id: "hp-02", name: "Wireless Noise-Cancelling Headphones", category: "headphones", brand: "Sonora",
    price: 149.99, rating: 4.8, stock: 22, featured: true,
    description: "Active noise cancelling, 30 hours of battery and a case that folds flat.",
    specs: { "Type": "Over-ear, closed", "Connection": "Bluetooth 5.3", "Battery life": "30 h", "Weight": "250 g" },
  },
  {
    id: "hp-03", name: "Sport Wireless Earbuds", category: "headphones", brand: "Lumo",
    price: 34.99, rating: 4.0, stock: 140, featured: false,
    description: "Sweat-resistant earbuds with ear hooks that stay put on a run.",
    specs: { "Type": "In-ear", "Connection": "Bluetooth 5.2", "Battery life": "8 h", "Water resistance": "IPX5" },
  },
  {
    id: "hp-04", name: "True Wireless Earbuds Pro", category: "headphones", brand: "Sonora",
    price: 79.5, rating: 4.5, stock: 60, featured: false,
    description: "Small earbuds with noise cancelling and a pocket-sized charging case.",
    specs: { "Type": "In-ear", "Connection": "Bluetooth 5.3", "Battery life": "6 h (24 h with case)", "Water resistance": "IPX4" },
  },
  {
    id: "hp-05", name: "Wired In-Ear Headphones", category: "headphones", brand: "Lumo",
    price: 9.99, rating: 3.8, stock: 260, featured: false,
    description: "Simple in-ear headphones with an in-line microphone.",
    specs: { "Type": "In-ear", "Connection": "3.5 mm jack", "Cable length": "1.2 m", "Microphone": "Yes" },
  },
  {
    id: "hp-06", name: "Kids' Volume-Limited Headphones", category: "headphones", brand: "Lumo",
    price: 24.99, rating: 4.2, stock: 0, featured: false,
    description: "Soft, bendable headphones that never go above 85 dB.",
    specs: { "Type": "On-ear", "Connection": "3.5 mm jack", "Volume limit": "85 dB", "Weight": "140 g" },
  },
  // ---- Keyboards ----
  {
    id: "kb-01", name: "Compact Mechanical Keyboard 75%", category: "keyboards", brand: "Keyforge",
    price: 69.0, rating: 4.5, stock: 48, featured: true,
    description: "A 75% layout with hot-swappable switches and a detachable cable.",
    specs: { "Layout": "75%, ISO", "Switches": "Red (linear)", "Connection": "USB-C cable", "Backlight": "White" },
  },
  {
    id: "kb-02", name: "Full-Size Mechanical Keyboard", category: "keyboards", brand: "Keyforge",
    price: 94.9, rating: 4.7, stock: 30, featured: false,
    description: "Full-size board with brown tactile switches, a number pad and media keys.",
    specs: { "Layout": "100%, ISO", "Switches": "Brown (tactile)", "Connection": "USB-C cable", "Backlight": "RGB" },
  },
  {
    id: "kb-03", name: "Slim Wireless Keyboard", category: "keyboards", brand: "Lumo",
    price: 29.99, rating: 4.1, stock: 90, featured: false,
    description: "Quiet low-profile keys; pairs with up to three devices.",
    specs: { "Layout": "100%, ISO", "Switches": "Scissor", "Connection": "Bluetooth 5.1", "Battery life": "12 months" },
  },
  {
    id: "kb-04", name: "Ergonomic Split Keyboard", category: "keyboards", brand: "Keyforge",
    price: 129.0, rating: 4.4, stock: 12, featured: false,
    description: "Two halves you can angle and tent for a relaxed typing posture.",
    specs: { "Layout": "Split, ISO", "Switches": "Brown (tactile)", "Connection": "USB-C cable", "Backlight": "None" },
  },
  {
    id: "kb-05", name: "Numeric Keypad", category: "keyboards", brand: "Voltline",
    price: 15.49, rating: 3.9, stock: 70, featured: false,
    description: "A separate number pad for laptops and compact keyboards.",
    specs: { "Layout": "21 keys", "Switches": "Membrane", "Connection": "USB-A cable", "Backlight": "None" },
  },
  {
    id: "kb-06", name: "Wireless Keyboard and Mouse Set", category: "keyboards", brand: "Lumo",
    price: 44.95, rating: 4.2, stock: 55, featured: false,
    description: "A full-size keyboard and a matching mouse sharing one small receiver.",
    specs: { "Layout": "100%, ISO", "Switches": "Membrane", "Connection": "2.4 GHz receiver", "Battery life": "18 months" },
  },
];
